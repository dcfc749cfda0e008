#include <criterion/criterion.h>

Test(placeholder_ccd, builds)
{
    cr_assert(1);
}
