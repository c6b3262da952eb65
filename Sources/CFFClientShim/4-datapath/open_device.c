/* ibv_open_device: a context's tables point into the device layer and into this one, so it is assembled here, above
 * both, and neither layer calls up into the other (datapath.h). */
#include "datapath.h"

FFSHIM_EXPORT struct ibv_context *ibv_open_device(struct ibv_device *dev) {
    struct ffs_context *context = ffs_context_open(dev);
    if (!context) return NULL; /* errno says why */
    ffs_install_datapath(&context->vctx);
    return &context->vctx.context;
}
