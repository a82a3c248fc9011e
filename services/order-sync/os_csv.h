/* os_csv: RFC 4180 CSV, read and written: fields split by commas, quoted
 * fields with "" for a quote and line breaks inside, CRLF or LF rows. */
#ifndef OS_CSV_H
#define OS_CSV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

typedef struct _os_csv_t os_csv_t;

/* Reads text[0..len). Never NULL. */
os_csv_t *os_csv_new(const char *text, size_t len);
void os_csv_destroy(os_csv_t **self_p);

/* The next row: returns its number of fields (their text in *fields, valid
 * until the next call), 0 at the end, -1 on malformed CSV (an unclosed
 * quote, text after a closing quote, a row over 64 fields) with *why set.
 * A blank line is skipped; a field written by os_csv_put with its formula
 * guard ("'+1555...") comes back as it was ("+1555..."). */
int os_csv_row(os_csv_t *self, char ***fields, const char **why);
/* The 1-based line where the last row began. */
int os_csv_line(os_csv_t *self);

/* Writes one field (quoted when it holds a comma, quote or line break; a
 * leading = + - @ gets a ' so spreadsheets do not run it as a formula),
 * then a comma, or CRLF when last. */
void os_csv_put(FILE *out, const char *field, bool last);

#endif
