/* order-sync: the shops' commerce data, kept in sync with their platforms. */
#include "os_server.h"

int
main(int argc, char **argv)
{
    int code;
    cc_service_t *svc = cc_service_new(&os_service_def, argc, argv, &code);
    if (!svc) return code;
    os_server_t *server = os_server_new(svc);
    int rc = server ? cc_service_run(svc) : 1;
    os_server_destroy(&server);
    cc_service_destroy(&svc);
    return rc;
}
