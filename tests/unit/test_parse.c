#include <criterion/criterion.h>

Test(placeholder_parse, builds)
{
    cr_assert(1);
}
