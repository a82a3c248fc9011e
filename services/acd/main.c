/* acd: queues, skills, routing and live agent state. */
#include "acd_server.h"

int
main(int argc, char **argv)
{
    int code;
    cc_service_t *svc = cc_service_new(&acd_service_def, argc, argv, &code);
    if (!svc) return code;
    acd_server_t *server = acd_server_new(svc);
    int rc = server ? cc_service_run(svc) : 1;
    acd_server_destroy(&server);
    cc_service_destroy(&svc);
    return rc;
}
