#pragma once
#include "esp_err.h"
#include "esp_netif_ip_addr.h"
typedef struct { const char *key; const char *value; } mdns_txt_item_t;
typedef struct mdns_ip_addr_s { esp_ip_addr_t addr; struct mdns_ip_addr_s *next; } mdns_ip_addr_t;
typedef struct mdns_result_s { struct mdns_result_s *next; char *instance_name; char *service_type; char *proto; char *hostname; uint16_t port; mdns_txt_item_t *txt; uint8_t *txt_value_len; size_t txt_count; mdns_ip_addr_t *addr; } mdns_result_t;
esp_err_t mdns_init(void);
esp_err_t mdns_hostname_set(const char *hostname);
esp_err_t mdns_query_ptr(const char *service_type, const char *proto, uint32_t timeout, size_t max_results, mdns_result_t **results);
esp_err_t mdns_query_a(const char *host_name, uint32_t timeout, esp_ip4_addr_t *addr);
void mdns_query_results_free(mdns_result_t *results);
