/* The drop-in product has no API of its own: it is FFClientShim linked with SONAME libibverbs.so.1. */
