#pragma once
#include <stdint.h>
typedef struct { uint32_t addr; } esp_ip4_addr_t;
typedef struct { uint32_t addr[4]; uint8_t zone; } esp_ip6_addr_t;
typedef struct { union { esp_ip6_addr_t ip6; esp_ip4_addr_t ip4; } u_addr; uint8_t type; } esp_ip_addr_t;
#define ESP_IPADDR_TYPE_V4 0
#define ESP_IPADDR_TYPE_V6 6
#define esp_ip4_addr1(ipaddr) (((const uint8_t*)(&(ipaddr)->addr))[0])
#define IPSTR "%d.%d.%d.%d"
#define IP2STR(ipaddr) esp_ip4_addr1(ipaddr), esp_ip4_addr1(ipaddr), esp_ip4_addr1(ipaddr), esp_ip4_addr1(ipaddr)
