/* cc_errno: names and descriptions for the error table. */
#include "cc/cc_errno.h"

const char *
cc_strerror(int err)
{
    switch (err) {
    case CC_OK: return "success";
#define XX(code, text) case CC_##code: return text;
    CC_ERRNO_MAP(XX)
#undef XX
    default: return "unknown error";
    }
}

const char *
cc_errname(int err)
{
    switch (err) {
    case CC_OK: return "OK";
#define XX(code, _) case CC_##code: return #code;
    CC_ERRNO_MAP(XX)
#undef XX
    default: return "EUNKNOWN";
    }
}
