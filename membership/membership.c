typedef int ndfs_placeholder_t; /* replaced by the real module */
