/* cc_errno: the project's error codes. 0 is success; errors are negative ints
 * generated from one table, named by cc_strerror(). */
#ifndef CC_ERRNO_H
#define CC_ERRNO_H

#define CC_ERRNO_MAP(XX)                                              \
    XX(EINVAL,      "invalid argument")                               \
    XX(ENOMEM,      "out of memory")                                  \
    XX(ETIMEDOUT,   "deadline passed")                                \
    XX(ECONN,       "connection failed")                              \
    XX(EPROTO,      "malformed message")                              \
    XX(ENOTFOUND,   "not found")                                      \
    XX(EEXIST,      "already exists")                                 \
    XX(EBUSY,       "busy or over capacity")                          \
    XX(EIO,         "input/output error")                             \
    XX(EDB,         "database error")                                 \
    XX(EREDIS,      "redis error")                                    \
    XX(ECONFIG,     "bad configuration")                              \
    XX(EREMOTE,     "remote side returned an error")                  \
    XX(ECHECKSUM,   "applied migration was edited")                   \
    XX(EINPROGRESS, "operation in progress")                          \
    XX(ECLOSED,     "closed")

typedef enum {
    CC_OK = 0,
#define XX(code, _) CC_##code,
    CC__ERRNO_FIRST = -1000,
    CC_ERRNO_MAP(XX)
#undef XX
    CC__ERRNO_LAST
} cc_errno_t;

/* Returns a static description of err (0 or a CC_* code); never NULL. */
const char *cc_strerror(int err);
/* Returns the symbolic name ("ETIMEDOUT") of err; never NULL. */
const char *cc_errname(int err);

#endif
