/* libkgapi.so exports every layer's public functions for the ctypes-based
 * oracle tests in tests/py; this file only gives the library a version. */
const char *kg_api_version(void);
const char *kg_api_version(void) { return KG_VERSION; }
