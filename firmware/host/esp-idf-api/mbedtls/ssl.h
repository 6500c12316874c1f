#pragma once
#include <stdint.h>
#include "mbedtls/x509_crt.h"
typedef struct mbedtls_ssl_config mbedtls_ssl_config;
typedef struct mbedtls_x509_crl mbedtls_x509_crl;
void mbedtls_ssl_conf_ca_chain(mbedtls_ssl_config *conf, mbedtls_x509_crt *ca_chain, mbedtls_x509_crl *ca_crl);
void mbedtls_ssl_conf_verify(mbedtls_ssl_config *conf, int (*f_vrfy)(void *, mbedtls_x509_crt *, int, uint32_t *), void *p_vrfy);
