/*
 * cunit_main.h — the shared main() of every CUnit suite executable.
 *
 * A test file defines `static const gd_test_case_t gd_tests[]` (terminated
 * by {NULL, NULL}) and a suite name, then expands GD_TEST_MAIN(name).  The
 * executable exits 0 only when every test ran and passed.
 */
#ifndef GIRDER_TESTS_CUNIT_MAIN_H
#define GIRDER_TESTS_CUNIT_MAIN_H

#include <CUnit/Basic.h>
#include <stdio.h>

typedef struct gd_test_case {
    const char *name;
    void (*fn)(void);
} gd_test_case_t;

static inline int gd_run_tests(const char *suite_name, const gd_test_case_t *cases)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 2;
    CU_pSuite suite = CU_add_suite(suite_name, NULL, NULL);
    if (suite == NULL)
        return 2;
    for (const gd_test_case_t *c = cases; c->name != NULL; c++)
        if (CU_add_test(suite, c->name, c->fn) == NULL)
            return 2;
    CU_basic_set_mode(CU_BRM_NORMAL);
    CU_basic_run_tests();
    unsigned failed = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
    unsigned ran = CU_get_number_of_tests_run();
    CU_cleanup_registry();
    return (failed == 0 && ran > 0) ? 0 : 1;
}

#define GD_TEST_MAIN(suite_name, cases)                                                            \
    int main(void)                                                                                 \
    {                                                                                              \
        return gd_run_tests(suite_name, cases);                                                    \
    }

#endif
