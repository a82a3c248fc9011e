/* cc_cfg: key table, defaults file, environment overrides, validation. */
#include "cc/cc_cfg.h"
#include "cc/cc_errno.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#ifndef CC_DEFAULT_CONFIG
#define CC_DEFAULT_CONFIG "/etc/callcenter/callcenter.env"
#endif

#define MAX_KEYS 256

typedef struct {
    const cc_cfg_key_t *key;
    char *value;         /* current text value, owned */
    const char *source;  /* "file", "env", "set" */
    long ival;
    bool bval;
} entry_t;

struct _cc_cfg_t {
    entry_t entries[MAX_KEYS];
    size_t count;
    char *path;
    char error[512];
};

static entry_t *
s_find(cc_cfg_t *self, const char *name)
{
    for (size_t i = 0; i < self->count; i++)
        if (strcmp(self->entries[i].key->name, name) == 0)
            return &self->entries[i];
    return NULL;
}

cc_cfg_t *
cc_cfg_new(const cc_cfg_key_t *const *tables)
{
    cc_cfg_t *self = calloc(1, sizeof *self);
    if (!self) abort();
    for (; *tables; tables++)
        for (const cc_cfg_key_t *k = *tables; k->name; k++) {
            assert(self->count < MAX_KEYS);
            assert(!s_find(self, k->name));
            self->entries[self->count++].key = k;
        }
    return self;
}

void
cc_cfg_destroy(cc_cfg_t **self_p)
{
    if (!self_p || !*self_p) return;
    cc_cfg_t *self = *self_p;
    for (size_t i = 0; i < self->count; i++) free(self->entries[i].value);
    free(self->path);
    free(self);
    *self_p = NULL;
}

static void
s_assign(entry_t *e, const char *value, const char *source)
{
    free(e->value);
    e->value = strdup(value);
    if (!e->value) abort();
    e->source = source;
}

int
cc_cfg_set(cc_cfg_t *self, const char *name, const char *value)
{
    entry_t *e = s_find(self, name);
    if (!e) return CC_ENOTFOUND;
    s_assign(e, value, "set");
    return 0;
}

/* Strips surrounding blanks and one pair of matching quotes, in place. */
static char *
s_trim(char *s)
{
    while (isspace((unsigned char) *s)) s++;
    char *end = s + strlen(s);
    while (end > s && isspace((unsigned char) end[-1])) *--end = '\0';
    size_t n = strlen(s);
    if (n >= 2 && (s[0] == '"' || s[0] == '\'') && s[n - 1] == s[0]) {
        s[n - 1] = '\0';
        s++;
    }
    return s;
}

static int
s_read_file(cc_cfg_t *self, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(self->error, sizeof self->error,
                 "config: cannot open defaults file %s: %s", path, strerror(errno));
        return CC_ECONFIG;
    }
    char line[4096];
    int lineno = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        char *s = s_trim(line);
        if (*s == '\0' || *s == '#') continue;
        if (strncmp(s, "export ", 7) == 0) s += 7;
        char *eq = strchr(s, '=');
        if (!eq) {
            snprintf(self->error, sizeof self->error,
                     "config: %s:%d: expected KEY=VALUE", path, lineno);
            fclose(f);
            return CC_ECONFIG;
        }
        *eq = '\0';
        char *name = s_trim(s), *value = s_trim(eq + 1);
        entry_t *e = s_find(self, name);
        if (e) s_assign(e, value, "file");   /* other services' keys are skipped */
    }
    fclose(f);
    return 0;
}

static int
s_fail(cc_cfg_t *self, const entry_t *e, const char *why)
{
    char masked[256];
    snprintf(self->error, sizeof self->error, "config: %s=\"%s\" (from %s): %s",
             e->key->name, cc_cfg_mask(e->value, e->key->flags, masked, sizeof masked),
             e->source, why);
    return CC_ECONFIG;
}

static int
s_validate(cc_cfg_t *self, entry_t *e)
{
    const cc_cfg_key_t *k = e->key;
    char why[256];
    switch (k->type) {
    case CC_CFG_INT: {
        char *end;
        errno = 0;
        long v = strtol(e->value, &end, 10);
        if (errno || end == e->value || *end != '\0' || v < k->min || v > k->max) {
            snprintf(why, sizeof why, "not an integer in [%ld, %ld]", k->min, k->max);
            return s_fail(self, e, why);
        }
        e->ival = v;
        return 0;
    }
    case CC_CFG_BOOL: {
        static const char *yes[] = { "1", "true", "yes", "on" }, *no[] = { "0", "false", "no", "off" };
        for (int i = 0; i < 4; i++) {
            if (strcasecmp(e->value, yes[i]) == 0) { e->bval = true; return 0; }
            if (strcasecmp(e->value, no[i]) == 0) { e->bval = false; return 0; }
        }
        return s_fail(self, e, "not a boolean (true/false, yes/no, on/off, 1/0)");
    }
    case CC_CFG_ENUM: {
        size_t n = strlen(e->value);
        for (const char *c = k->choices; n && c && *c;) {
            const char *bar = strchr(c, '|');
            size_t len = bar ? (size_t) (bar - c) : strlen(c);
            if (len == n && strncmp(c, e->value, n) == 0) return 0;
            c = bar ? bar + 1 : NULL;
        }
        snprintf(why, sizeof why, "not one of %s", k->choices);
        return s_fail(self, e, why);
    }
    case CC_CFG_STR: {
        size_t max = k->max > 0 ? (size_t) k->max : 4096;
        if (strlen(e->value) > max) {
            snprintf(why, sizeof why, "longer than %zu characters", max);
            return s_fail(self, e, why);
        }
        if ((k->flags & CC_CFG_NONEMPTY) && !*e->value) return s_fail(self, e, "must not be empty");
        for (const char *p = e->value; *p; p++)
            if (iscntrl((unsigned char) *p)) return s_fail(self, e, "contains a control character");
        return 0;
    }
    }
    return s_fail(self, e, "unknown type");
}

int
cc_cfg_load(cc_cfg_t *self, const char *path)
{
    self->error[0] = '\0';
    if (path) {
        free(self->path);
        self->path = strdup(path);
        int rc = s_read_file(self, path);
        if (rc) return rc;
    }
    for (size_t i = 0; i < self->count; i++) {
        entry_t *e = &self->entries[i];
        const char *env = getenv(e->key->name);
        if (env && (!e->source || strcmp(e->source, "set") != 0)) s_assign(e, env, "env");
        if (!e->value) {
            snprintf(self->error, sizeof self->error,
                     "config: %s has no value: it is missing from %s and the environment",
                     e->key->name, self->path ? self->path : "(no defaults file)");
            return CC_ECONFIG;
        }
        int rc = s_validate(self, e);
        if (rc) return rc;
    }
    return 0;
}

const char *cc_cfg_error(cc_cfg_t *self) { return self->error; }
const char *cc_cfg_path(cc_cfg_t *self) { return self->path; }

char *
cc_cfg_resolve(cc_cfg_t *self, const char *path, char *buf, size_t cap)
{
    const char *slash = self->path ? strrchr(self->path, '/') : NULL;
    if (path[0] == '/' || !slash) snprintf(buf, cap, "%s", path);
    else snprintf(buf, cap, "%.*s/%s", (int) (slash - self->path), self->path, path);
    return buf;
}

static entry_t *
s_get(cc_cfg_t *self, const char *name, cc_cfg_type_t type)
{
    entry_t *e = s_find(self, name);
    assert(e && "config key not declared");
    assert(e->key->type == type || (type == CC_CFG_STR && e->key->type == CC_CFG_ENUM));
    assert(e->value && "config not loaded");
    return e;
}

const char *cc_cfg_str(cc_cfg_t *self, const char *name) { return s_get(self, name, CC_CFG_STR)->value; }
long cc_cfg_int(cc_cfg_t *self, const char *name) { return s_get(self, name, CC_CFG_INT)->ival; }
bool cc_cfg_bool(cc_cfg_t *self, const char *name) { return s_get(self, name, CC_CFG_BOOL)->bval; }

char *
cc_cfg_mask(const char *value, unsigned flags, char *buf, size_t cap)
{
    if (!value) value = "";
    const char *scheme = strstr(value, "://");
    const char *at = scheme ? strchr(scheme + 3, '@') : NULL;
    const char *colon = at ? memchr(scheme + 3, ':', (size_t) (at - scheme - 3)) : NULL;
    if (at && colon) {
        /* scheme://user:password@host -> scheme://user:****@host */
        snprintf(buf, cap, "%.*s****%s", (int) (colon + 1 - value), value, at);
    } else if ((flags & CC_CFG_SECRET) && *value && !scheme) {
        snprintf(buf, cap, "****");
    } else {
        snprintf(buf, cap, "%s", value);
    }
    return buf;
}

void
cc_cfg_print(cc_cfg_t *self, FILE *out)
{
    char masked[1024];
    for (size_t i = 0; i < self->count; i++) {
        entry_t *e = &self->entries[i];
        fprintf(out, "%s=%s  # %s\n", e->key->name,
                cc_cfg_mask(e->value, e->key->flags, masked, sizeof masked),
                e->source ? e->source : "unset");
    }
}

void
cc_cfg_help(cc_cfg_t *self, FILE *out)
{
    static const char *types[] = { "string", "integer", "boolean", "one of" };
    char masked[1024];
    fprintf(out, "Configuration (defaults file %s; environment variables override):\n",
            self->path ? self->path : cc_cfg_default_path());
    for (size_t i = 0; i < self->count; i++) {
        entry_t *e = &self->entries[i];
        const cc_cfg_key_t *k = e->key;
        fprintf(out, "  %-28s %s", k->name, types[k->type]);
        if (k->type == CC_CFG_INT) fprintf(out, " [%ld..%ld]", k->min, k->max);
        if (k->type == CC_CFG_ENUM) fprintf(out, " %s", k->choices);
        if (e->value) fprintf(out, " (default %s)", cc_cfg_mask(e->value, k->flags, masked, sizeof masked));
        fprintf(out, "\n      %s\n", k->help);
    }
}

const char *
cc_cfg_default_path(void)
{
    const char *env = getenv("CC_CONFIG_FILE");
    return env && *env ? env : CC_DEFAULT_CONFIG;
}

void
cc_cfg_test(void)
{
    static const cc_cfg_key_t keys[] = {
        { "T_PORT", CC_CFG_INT, 1, 65535, NULL, 0, "a port" },
        { "T_NAME", CC_CFG_STR, 0, 16, NULL, CC_CFG_NONEMPTY, "a name" },
        { "T_ON", CC_CFG_BOOL, 0, 0, NULL, 0, "a flag" },
        { "T_LEVEL", CC_CFG_ENUM, 0, 0, "debug|info|warn", 0, "a level" },
        { "T_URL", CC_CFG_STR, 0, 0, NULL, CC_CFG_SECRET, "a secret url" },
        CC_CFG_END
    };
    const cc_cfg_key_t *tables[] = { keys, NULL };
    char path[] = "/tmp/cc_cfg_test_XXXXXX";
    int fd = mkstemp(path);
    assert(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fprintf(f, "# defaults\nT_PORT=5060\nT_NAME = \"acd\"\nT_ON=yes\nT_LEVEL=info\n"
               "T_URL=postgresql://cc:hunter2@127.0.0.1:5432/cc\nOTHER_SERVICE_KEY=1\n");
    fclose(f);

    cc_cfg_t *cfg = cc_cfg_new(tables);
    assert(cc_cfg_load(cfg, path) == 0);
    assert(cc_cfg_int(cfg, "T_PORT") == 5060);
    assert(strcmp(cc_cfg_str(cfg, "T_NAME"), "acd") == 0);
    assert(cc_cfg_bool(cfg, "T_ON"));
    char buf[256];
    assert(strcmp(cc_cfg_mask(cc_cfg_str(cfg, "T_URL"), CC_CFG_SECRET, buf, sizeof buf),
                  "postgresql://cc:****@127.0.0.1:5432/cc") == 0);
    assert(strcmp(cc_cfg_mask("s3cret", CC_CFG_SECRET, buf, sizeof buf), "****") == 0);
    /* A user without a password is not a secret; a URL without one neither. */
    assert(strcmp(cc_cfg_mask("postgresql://cc@h:1/db", CC_CFG_SECRET, buf, sizeof buf), "postgresql://cc@h:1/db") == 0);
    assert(strcmp(cc_cfg_mask("redis://h:1/0", CC_CFG_SECRET, buf, sizeof buf), "redis://h:1/0") == 0);

    /* The environment overrides the file; a bad value names key and value. */
    setenv("T_PORT", "99999", 1);
    assert(cc_cfg_load(cfg, path) == CC_ECONFIG);
    assert(strstr(cc_cfg_error(cfg), "T_PORT=\"99999\" (from env): not an integer in [1, 65535]"));
    setenv("T_PORT", "5061", 1);
    assert(cc_cfg_load(cfg, path) == 0 && cc_cfg_int(cfg, "T_PORT") == 5061);
    unsetenv("T_PORT");
    setenv("T_LEVEL", "loud", 1);
    assert(cc_cfg_load(cfg, path) == CC_ECONFIG && strstr(cc_cfg_error(cfg), "not one of debug|info|warn"));
    unsetenv("T_LEVEL");
    setenv("T_ON", "maybe", 1);
    assert(cc_cfg_load(cfg, path) == CC_ECONFIG && strstr(cc_cfg_error(cfg), "T_ON"));
    unsetenv("T_ON");
    setenv("T_NAME", "", 1);
    assert(cc_cfg_load(cfg, path) == CC_ECONFIG && strstr(cc_cfg_error(cfg), "must not be empty"));
    unsetenv("T_NAME");
    /* A secret in an error message stays masked. */
    setenv("T_URL", "postgresql://cc:hunter2@h/\x01", 1);
    assert(cc_cfg_load(cfg, path) == CC_ECONFIG && !strstr(cc_cfg_error(cfg), "hunter2"));
    unsetenv("T_URL");
    assert(cc_cfg_load(cfg, "/nonexistent/cc.env") == CC_ECONFIG);
    cc_cfg_destroy(&cfg);
    assert(cfg == NULL);
    cc_cfg_destroy(&cfg);

    /* A key missing from file and environment is an error naming it. */
    f = fopen(path, "w");
    fprintf(f, "T_PORT=1\n");
    fclose(f);
    cfg = cc_cfg_new(tables);
    assert(cc_cfg_load(cfg, path) == CC_ECONFIG && strstr(cc_cfg_error(cfg), "T_NAME has no value"));
    cc_cfg_destroy(&cfg);
    f = fopen(path, "w");
    fprintf(f, "garbage line\n");
    fclose(f);
    cfg = cc_cfg_new(tables);
    assert(cc_cfg_load(cfg, path) == CC_ECONFIG && strstr(cc_cfg_error(cfg), ":1: expected KEY=VALUE"));
    cc_cfg_destroy(&cfg);
    unlink(path);
}
