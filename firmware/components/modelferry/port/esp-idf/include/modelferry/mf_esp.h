/* The ESP-IDF port: opens the ports on the device's partitions, NVS and network, and fills
 * a client configuration from Kconfig. */
#ifndef MF_ESP_H
#define MF_ESP_H

#include "modelferry/modelferry.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Finds the model partitions (Kconfig labels), opens the NVS namespace, creates the HTTP
 * client. Call after nvs_flash_init(), with the network up and mdns_init() done. */
mf_err mf_esp_ports_open(mf_ports *ports);

/* Defaults plus everything Kconfig sets (fallback URL, keys, pins, poll, capabilities). The
 * strings and key arrays it points to are static. MF_ERR_INVALID_ARG when a trusted key is
 * not base64 of 32 bytes, or a gateway pin not 64 hex characters (the device must not start
 * without the checks it was built with). */
mf_err mf_esp_config_from_kconfig(mf_config *cfg);

/* The device's public key as base64 (44 characters and a NUL), made on first use: the key
 * column of the CSV `modelferry devices preauthorize` reads, beside the MAC. */
mf_err mf_esp_device_key_base64(const mf_ports *ports, char out[45]);

#ifdef __cplusplus
}
#endif

#endif
