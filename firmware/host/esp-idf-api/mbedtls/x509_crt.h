#pragma once
#include <stddef.h>
#define MBEDTLS_X509_BADCERT_NOT_TRUSTED 0x08
typedef struct mbedtls_asn1_buf { int tag; size_t len; unsigned char *p; } mbedtls_x509_buf;
typedef struct mbedtls_x509_crt { mbedtls_x509_buf raw; mbedtls_x509_buf pk_raw; struct mbedtls_x509_crt *next; } mbedtls_x509_crt;
void mbedtls_x509_crt_init(mbedtls_x509_crt *crt);
