#include <criterion/criterion.h>

Test(placeholder_config, builds)
{
    cr_assert(1);
}
