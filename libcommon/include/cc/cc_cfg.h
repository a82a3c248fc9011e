/* cc_cfg: configuration from one table of keys.
 *
 * Each service declares its keys once (name, type, bounds, flags, help); the
 * defaults of every key live in one file, deploy/callcenter.env (KEY=VALUE
 * lines), which tools/ and docker-compose read too. An environment variable
 * of the same name overrides the file. The same table gives --help,
 * validation and --print-config (secrets masked). */
#ifndef CC_CFG_H
#define CC_CFG_H

#include <stdbool.h>
#include <stdio.h>

typedef enum { CC_CFG_STR, CC_CFG_INT, CC_CFG_BOOL, CC_CFG_ENUM } cc_cfg_type_t;

#define CC_CFG_SECRET  0x1u  /* masked by --print-config */
#define CC_CFG_NONEMPTY 0x2u /* an empty string is invalid */

typedef struct {
    const char *name;     /* env var and file key, e.g. "ACD_ADMIN_PORT" */
    cc_cfg_type_t type;
    long min, max;        /* INT: inclusive bounds; STR: max length (0 = 4096) */
    const char *choices;  /* ENUM: "debug|info|warn|error" */
    unsigned flags;
    const char *help;
} cc_cfg_key_t;

#define CC_CFG_END { NULL, CC_CFG_STR, 0, 0, NULL, 0, NULL }

typedef struct _cc_cfg_t cc_cfg_t;

/* Creates a config over up to 4 NULL-terminated key tables (later tables may
 * not repeat a name). Never NULL. */
cc_cfg_t *cc_cfg_new(const cc_cfg_key_t *const *tables);
void cc_cfg_destroy(cc_cfg_t **self_p);

/* Reads the defaults file (NULL: no file), then the environment, and
 * validates every key. Returns 0, or CC_ECONFIG with a message naming the key
 * and value in cc_cfg_error(). A missing file is CC_ECONFIG too. */
int cc_cfg_load(cc_cfg_t *self, const char *path);
/* Overrides one key as the environment would (for tests and argv). */
int cc_cfg_set(cc_cfg_t *self, const char *name, const char *value);
const char *cc_cfg_error(cc_cfg_t *self);
/* The defaults file read by the last load (NULL if none). */
const char *cc_cfg_path(cc_cfg_t *self);
/* Resolves a path from the configuration: absolute as is, relative to the
 * defaults file's folder otherwise. Writes into buf; returns buf. */
char *cc_cfg_resolve(cc_cfg_t *self, const char *path, char *buf, size_t cap);

/* Getters: name must be declared (assert). */
const char *cc_cfg_str(cc_cfg_t *self, const char *name);
long cc_cfg_int(cc_cfg_t *self, const char *name);
bool cc_cfg_bool(cc_cfg_t *self, const char *name);

/* Prints KEY=VALUE  # source, secrets masked. */
void cc_cfg_print(cc_cfg_t *self, FILE *out);
/* Prints each key with type, bounds, default and help. */
void cc_cfg_help(cc_cfg_t *self, FILE *out);

/* Writes value with any password or secret masked into buf. Returns buf. */
char *cc_cfg_mask(const char *value, unsigned flags, char *buf, size_t cap);

/* The default defaults file: $CC_CONFIG_FILE, else the build-time path. */
const char *cc_cfg_default_path(void);

void cc_cfg_test(void);

#endif
