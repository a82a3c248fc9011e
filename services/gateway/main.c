/* gateway: SIP trunks and phones, RTP media, CDRs. */
#include "gw_server.h"

int
main(int argc, char **argv)
{
    int code;
    cc_service_t *svc = cc_service_new(&gw_service_def, argc, argv, &code);
    if (!svc) return code;
    gw_server_t *server = gw_server_new(svc);
    int rc = server ? cc_service_run(svc) : 1;
    gw_server_destroy(&server);
    cc_service_destroy(&svc);
    return rc;
}
