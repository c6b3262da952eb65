/* The shim's pure functions against Debian's own: loads both libraries by path and compares the rate
 * conversions and the *_str texts for every input in range. Usage: tablecheck SHIM.so DEBIAN.so */
#include <dlfcn.h>
#include <infiniband/verbs.h>
#include <stdio.h>
#include <string.h>

static void *sym(void *lib, const char *name) {
    void *f = dlsym(lib, name);
    if (!f) printf("FAIL %s missing: %s\n", name, dlerror());
    return f;
}

int main(int argc, char **argv) {
    if (argc != 3) return 2;
    void *shim = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL), *debian = dlopen(argv[2], RTLD_NOW | RTLD_LOCAL);
    if (!shim || !debian) {
        printf("FAIL dlopen: %s\n", dlerror());
        return 1;
    }
    int failures = 0;
    const char *int_of_int[] = {"ibv_rate_to_mult", "mult_to_ibv_rate", "ibv_rate_to_mbps", "mbps_to_ibv_rate"};
    for (size_t f = 0; f < 4; f++) {
        int (*a)(int) = (int (*)(int))sym(shim, int_of_int[f]), (*b)(int) = (int (*)(int))sym(debian, int_of_int[f]);
        if (!a || !b) return 1;
        /* Rates are small enums, multiples below 500, Mb/s values below 1,300,000. */
        int limit = f == 3 ? 1300000 : 500;
        for (int v = -1; v <= limit; v++)
            if (a(v) != b(v)) {
                if (failures++ < 20) printf("FAIL %s(%d): shim %d, debian %d\n", int_of_int[f], v, a(v), b(v));
            }
    }
    const char *str_of_int[] = {"ibv_wc_status_str", "ibv_node_type_str", "ibv_port_state_str", "ibv_event_type_str"};
    for (size_t f = 0; f < 4; f++) {
        const char *(*a)(int) = (const char *(*)(int))sym(shim, str_of_int[f]);
        const char *(*b)(int) = (const char *(*)(int))sym(debian, str_of_int[f]);
        if (!a || !b) return 1;
        for (int v = -1; v <= 40; v++)
            if (strcmp(a(v), b(v)) != 0) {
                if (failures++ < 40) printf("FAIL %s(%d): shim \"%s\", debian \"%s\"\n", str_of_int[f], v, a(v), b(v));
            }
    }
    if (failures) return 1;
    printf("ok tables\n");
    return 0;
}
