/* Calls ibv_get_device_list once and prints what it returned: the shim tests' probe of the missing-router
 * case (is errno set, is the list empty but not NULL), and the program whose run time measures load cost. */
#include <errno.h>
#include <infiniband/verbs.h>
#include <stdio.h>

int main(void) {
    errno = 0;
    int count = -1;
    struct ibv_device **list = ibv_get_device_list(&count);
    int error = errno;
    printf("list=%s count=%d errno=%d", list ? "non-null" : "null", count, error);
    if (list && count > 0) printf(" name=%s", ibv_get_device_name(list[0]));
    printf("\n");
    if (list) ibv_free_device_list(list);
    return 0;
}
