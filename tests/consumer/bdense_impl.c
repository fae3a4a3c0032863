/* The one translation unit that holds bdense's implementation. */
#define BDENSE_IMPLEMENTATION
#include <bdense.h>
