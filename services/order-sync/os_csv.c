/* os_csv: a small careful CSV reader and writer. */
#include "os_csv.h"

#include <stdlib.h>
#include <string.h>

#define MAX_FIELDS 64

struct _os_csv_t {
    const char *p, *end;
    int line, row_line;
    char *buf;                /* this row's fields, NUL-separated */
    size_t cap;
    char *fields[MAX_FIELDS + 1];
};

os_csv_t *
os_csv_new(const char *text, size_t len)
{
    os_csv_t *self = calloc(1, sizeof *self);
    if (!self) abort();
    self->p = text;
    self->end = text + len;
    self->line = 1;
    if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) self->p += 3;   /* a UTF-8 byte order mark */
    self->cap = len + MAX_FIELDS + 1;
    self->buf = malloc(self->cap);
    if (!self->buf) abort();
    return self;
}

void
os_csv_destroy(os_csv_t **self_p)
{
    if (!self_p || !*self_p) return;
    free((*self_p)->buf);
    free(*self_p);
    *self_p = NULL;
}

int os_csv_line(os_csv_t *self) { return self->row_line; }

int
os_csv_row(os_csv_t *self, char ***fields, const char **why)
{
    /* Skip blank lines. */
    while (self->p < self->end && (*self->p == '\n' || *self->p == '\r')) {
        if (*self->p == '\n') self->line++;
        self->p++;
    }
    if (self->p >= self->end) return 0;
    self->row_line = self->line;
    char *w = self->buf;
    int n = 0;
    for (;;) {
        if (n == MAX_FIELDS) { *why = "a row has more than 64 fields"; return -1; }
        self->fields[n++] = w;
        if (self->p < self->end && *self->p == '"') {
            self->p++;
            for (;;) {
                if (self->p >= self->end) { *why = "a quoted field is not closed"; return -1; }
                char c = *self->p++;
                if (c == '"') {
                    if (self->p < self->end && *self->p == '"') { *w++ = '"'; self->p++; continue; }
                    break;
                }
                if (c == '\n') self->line++;
                *w++ = c;
            }
            if (self->p < self->end && *self->p != ',' && *self->p != '\n' && *self->p != '\r') {
                *why = "text after a closing quote";
                return -1;
            }
        } else {
            while (self->p < self->end && *self->p != ',' && *self->p != '\n' && *self->p != '\r') {
                if (*self->p == '"') { *why = "a quote inside an unquoted field"; return -1; }
                *w++ = *self->p++;
            }
        }
        *w++ = '\0';
        char *f = self->fields[n - 1];
        if (f[0] == '\'' && f[1] && strchr("=+-@", f[1])) memmove(f, f + 1, strlen(f));   /* os_csv_put's guard */
        if (self->p < self->end && *self->p == ',') { self->p++; continue; }
        if (self->p < self->end && *self->p == '\r') self->p++;
        if (self->p < self->end && *self->p == '\n') { self->p++; self->line++; }
        break;
    }
    self->fields[n] = NULL;
    *fields = self->fields;
    return n;
}

void
os_csv_put(FILE *out, const char *field, bool last)
{
    const char *f = field ? field : "";
    bool formula = *f == '=' || *f == '+' || *f == '-' || *f == '@';
    if (formula || strpbrk(f, ",\"\r\n")) {
        fputc('"', out);
        if (formula) fputc('\'', out);
        for (const char *c = f; *c; c++) {
            if (*c == '"') fputc('"', out);
            fputc(*c, out);
        }
        fputc('"', out);
    } else {
        fputs(f, out);
    }
    fputs(last ? "\r\n" : ",", out);
}
