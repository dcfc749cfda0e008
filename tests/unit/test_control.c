#include <criterion/criterion.h>

Test(placeholder_control, builds)
{
    cr_assert(1);
}
