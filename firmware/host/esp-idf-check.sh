#!/usr/bin/env bash
# Compiles the ESP-IDF port and the example (-fsyntax-only, -Werror) against a real ESP-IDF
# tree, by hand: CI has no ESP-IDF. Not a build (nothing links), but every declaration the
# port uses comes from ESP-IDF's own headers, and int32_t is `long` as with Espressif's
# compiler, so a format string that is wrong there fails here.
#   firmware/host/esp-idf-check.sh IDF_PATH MDNS_COMPONENT [MBEDTLS_INCLUDE...]
# IDF_PATH: an ESP-IDF checkout (v5.1 or later, with its lwip submodule); MDNS_COMPONENT:
# espressif/mdns (esp-protocols/components/mdns). Needs Debian's gcc-xtensa-lx106 and
# picolibc-xtensa-lx106-elf, libcjson-dev and libsodium-dev (their headers only). Without
# mbedtls include folders, mbedtls/ssl.h is a stand-in naming the two types
# esp_crt_bundle.h uses, and the gateway-pins choice (which calls mbedtls) is not checked.
# With them (for ESP-IDF 6: Mbed TLS 4's include/ and TF-PSA-Crypto's include/ and
# drivers/builtin/include/), every trust choice is: certificate bundle, pinned PEM, pins.
set -euo pipefail
idf=${1:?IDF_PATH}; mdns=${2:?MDNS_COMPONENT}; shift 2
here=$(cd "$(dirname "$0")" && pwd)
component="$here/../components/modelferry"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
c="$idf/components"

# Every component's include folder, then what the esp32s3 (xtensa) target adds.
inc=(-I"$c/esp_libc/platform_include")
for d in "$c"/*/include; do [ "$d" = "$c/linux/include" ] || inc+=(-I"$d"); done
for d in freertos/FreeRTOS-Kernel/include freertos/FreeRTOS-Kernel/portable/xtensa/include \
  freertos/FreeRTOS-Kernel/portable/xtensa/include/freertos freertos/config/include \
  freertos/config/include/freertos freertos/config/xtensa/include freertos/esp_additions/include \
  soc/esp32s3/include soc/esp32s3/register hal/esp32s3/include esp_rom/esp32s3/include \
  esp_rom/esp32s3/include/esp32s3 xtensa/esp32s3/include esp_hw_support/port/esp32s3/include \
  esp_hw_support/include/soc esp_hw_support/etm/include mbedtls/port/include \
  mbedtls/esp_crt_bundle/include esp-tls esp-tls/esp-tls-crypto lwip/lwip/src/include \
  lwip/port/include lwip/port/freertos/include lwip/port/esp32xx/include efuse/esp32s3/include; do
  [ -d "$c/$d" ] && inc+=(-I"$c/$d")
done
if [ $# -eq 0 ]; then
  mkdir -p "$work/stub/mbedtls"
  printf 'typedef struct mbedtls_ssl_config mbedtls_ssl_config;\ntypedef struct mbedtls_x509_crt mbedtls_x509_crt;\n' >"$work/stub/mbedtls/ssl.h"
  inc=(-I"$work/stub" "${inc[@]}")
else
  for d in "$@"; do inc+=(-I"$d"); done
fi
mkdir -p "$work/sodium"
ln -s /usr/include/sodium.h /usr/include/sodium "$work/sodium/"

# What menuconfig would write: the target, picolibc, the options ESP-IDF's headers insist
# on, and this project's Kconfig defaults.
kconfig() {
  cat <<'H'
#pragma once
#define CONFIG_IDF_TARGET "esp32s3"
#define CONFIG_IDF_TARGET_ESP32S3 1
#define CONFIG_IDF_TARGET_ARCH_XTENSA 1
#define CONFIG_IDF_FIRMWARE_CHIP_ID 0x0009
#define CONFIG_LIBC_PICOLIBC 1
#define CONFIG_FREERTOS_HZ 1000
#define CONFIG_FREERTOS_NUMBER_OF_CORES 2
#define CONFIG_FREERTOS_MAX_TASK_NAME_LEN 16
#define CONFIG_FREERTOS_ISR_STACKSIZE 1536
#define CONFIG_FREERTOS_IDLE_TASK_STACKSIZE 1536
#define CONFIG_FREERTOS_TIMER_TASK_STACK_DEPTH 2048
#define CONFIG_FREERTOS_TIMER_QUEUE_LENGTH 10
#define CONFIG_FREERTOS_TIMER_TASK_PRIORITY 1
#define CONFIG_FREERTOS_QUEUE_REGISTRY_SIZE 0
#define CONFIG_FREERTOS_TASK_NOTIFICATION_ARRAY_ENTRIES 1
#define CONFIG_FREERTOS_THREAD_LOCAL_STORAGE_POINTERS 1
#define CONFIG_FREERTOS_CHECK_STACKOVERFLOW_CANARY 1
#define CONFIG_FREERTOS_TIMER_SERVICE_TASK_NAME "Tmr Svc"
#define CONFIG_FREERTOS_TIMER_SERVICE_TASK_CORE_AFFINITY 0x7FFFFFFF
#define CONFIG_FREERTOS_SUPPORT_STATIC_ALLOCATION 1
#define CONFIG_LOG_DEFAULT_LEVEL 3
#define CONFIG_LOG_MAXIMUM_LEVEL 3
#define CONFIG_LOG_TIMESTAMP_SOURCE_RTOS 1
#define CONFIG_LOG_VERSION_1 1
#define CONFIG_LOG_VERSION 1
#define CONFIG_MBEDTLS_CERTIFICATE_BUNDLE 1
#define CONFIG_ESP_TLS_USING_MBEDTLS 1
#define CONFIG_ESP_HTTP_CLIENT_ENABLE_HTTPS 1
#define CONFIG_SPI_FLASH_MMAP 1
#define CONFIG_ESP_WIFI_STATIC_RX_BUFFER_NUM 10
#define CONFIG_ESP_WIFI_DYNAMIC_RX_BUFFER_NUM 32
#define CONFIG_ESP_WIFI_TX_BUFFER_TYPE 1
#define CONFIG_ESP_WIFI_DYNAMIC_TX_BUFFER_NUM 32
#define CONFIG_ESP_WIFI_TX_BA_WIN 6
#define CONFIG_ESP_WIFI_RX_BA_WIN 6
#define CONFIG_ESP_WIFI_AMPDU_TX_ENABLED 1
#define CONFIG_ESP_WIFI_AMPDU_RX_ENABLED 1
#define CONFIG_ESP_WIFI_NVS_ENABLED 1
#define CONFIG_ESP_WIFI_SOFTAP_BEACON_MAX_LEN 752
#define CONFIG_ESP_WIFI_MGMT_SBUF_NUM 32
#define CONFIG_ESP_WIFI_ESPNOW_MAX_ENCRYPT_NUM 7
#define CONFIG_ESP_WIFI_RX_MGMT_BUF_NUM_DEF 5
#define CONFIG_ESP_WIFI_DYNAMIC_RX_MGMT_BUF 0
#define CONFIG_ESP_WIFI_STATIC_RX_MGMT_BUFFER 1
#define CONFIG_ESP_WIFI_DYNAMIC_TX_BUFFER 1
#define CONFIG_ESP_WIFI_ENABLE_WPA3_SAE 1
#define CONFIG_ESP_WIFI_SOFTAP_SUPPORT 1
#define CONFIG_LWIP_IPV4 1
#define CONFIG_LWIP_IPV6 1
#define CONFIG_LWIP_IPV6_NUM_ADDRESSES 3
#define CONFIG_LWIP_DHCP_COARSE_TIMER_SECS 1
#define CONFIG_LWIP_TCP_OVERSIZE_MSS 1
#define CONFIG_LWIP_MAX_SOCKETS 10
#define CONFIG_LWIP_TCP_MSS 1440
#define CONFIG_LWIP_TCP_SND_BUF_DEFAULT 5760
#define CONFIG_LWIP_TCP_WND_DEFAULT 5760
#define CONFIG_LWIP_TCP_RECVMBOX_SIZE 6
#define CONFIG_LWIP_UDP_RECVMBOX_SIZE 6
#define CONFIG_LWIP_TCPIP_RECVMBOX_SIZE 32
#define CONFIG_LWIP_MAX_ACTIVE_TCP 16
#define CONFIG_LWIP_MAX_LISTENING_TCP 16
#define CONFIG_LWIP_MAX_UDP_PCBS 16
#define CONFIG_LWIP_MAX_RAW_PCBS 16
#define CONFIG_LWIP_DNS_MAX_SERVERS 3
#define CONFIG_LWIP_DHCP_OPTIONS_LEN 68
#define CONFIG_LWIP_NUM_NETIF_CLIENT_DATA 0
#define CONFIG_LWIP_IP_DEFAULT_TTL 64
#define CONFIG_LWIP_LOOPBACK_MAX_PBUFS 8
#define CONFIG_LWIP_TCP_RTO_TIME 1500
#define CONFIG_LWIP_TCP_TMR_INTERVAL 250
#define CONFIG_LWIP_TCP_MSL 60000
#define CONFIG_LWIP_TCP_FIN_WAIT_TIMEOUT 20000
#define CONFIG_LWIP_TCP_MAXRTX 12
#define CONFIG_LWIP_TCP_SYNMAXRTX 12
#define CONFIG_LWIP_TCP_QUEUE_OOSEQ 1
#define CONFIG_LWIP_TCP_OOSEQ_TIMEOUT 6
#define CONFIG_LWIP_TCP_OOSEQ_MAX_PBUFS 4
#define CONFIG_LWIP_IPV6_MEMP_NUM_ND6_QUEUE 3
#define CONFIG_LWIP_IPV6_ND6_NUM_NEIGHBORS 5
#define CONFIG_LWIP_MAX_DNS_ENTRIES 4
#define CONFIG_LWIP_SNTP_MAX_SERVERS 1
#define CONFIG_LWIP_SNTP_UPDATE_DELAY 3600000
#define CONFIG_LWIP_SNTP_MAXIMUM_STARTUP_DELAY 5000
#define CONFIG_LWIP_IP_REASS_MAX_PBUFS 10
#define CONFIG_LWIP_TCPIP_TASK_STACK_SIZE 3072
#define CONFIG_LWIP_TCPIP_TASK_PRIO 18
#define CONFIG_LWIP_DHCPS_LEASE_UNIT 60
#define CONFIG_LWIP_DHCPS_MAX_STATION_NUM 8
#define CONFIG_LWIP_HOOK_TCP_ISN_DEFAULT 1
#define CONFIG_LWIP_HOOK_IP6_ROUTE_DEFAULT 1
#define CONFIG_LWIP_HOOK_ND6_GET_GW_DEFAULT 1
#define CONFIG_LWIP_HOOK_IP6_SELECT_SRC_ADDR_NONE 1
#define CONFIG_LWIP_HOOK_NETCONN_EXT_RESOLVE_NONE 1
#define CONFIG_LWIP_HOOK_DHCP_EXTRA_OPTION_NONE 1
#define CONFIG_LWIP_HOOK_IP6_INPUT_DEFAULT 1
#define CONFIG_LWIP_LOCAL_HOSTNAME "espressif"
#define CONFIG_MDNS_MAX_INTERFACES 3
#define CONFIG_MDNS_TASK_PRIORITY 1
#define CONFIG_MDNS_MAX_SERVICES 10
H
  # This project's Kconfig defaults, from the Kconfig files themselves.
  awk '/^config MODELFERRY_/ { name = $2 } /^    default / && name { v = substr($0, index($0, "default") + 8);
       if (v == "y") v = 1; if (v != "n") print "#define CONFIG_" name " " v; name = "" }' \
    "$component/Kconfig" "$here/../main/Kconfig.projbuild"
}
mkdir -p "$work/bundle" "$work/pem"
kconfig >"$work/bundle/sdkconfig.h"
kconfig >"$work/pem/sdkconfig.h"
printf '#define CONFIG_MODELFERRY_TLS_CERT_BUNDLE 1\n' >>"$work/bundle/sdkconfig.h"
printf '#define CONFIG_MODELFERRY_TLS_PINNED_PEM 1\n#define CONFIG_MODELFERRY_TLS_CA_PEM_FILE "gateway-ca.pem"\n#define CONFIG_MODELFERRY_TLS_SKIP_NAME_CHECK 1\n' >>"$work/pem/sdkconfig.h"
variants="bundle pem"
if [ $# -gt 0 ]; then
  mkdir -p "$work/pins"
  kconfig >"$work/pins/sdkconfig.h"
  printf '#define CONFIG_MODELFERRY_TLS_GATEWAY_PINS 1\n#undef CONFIG_MODELFERRY_GATEWAY_PINS\n#define CONFIG_MODELFERRY_GATEWAY_PINS "%s"\n' \
    "0000000000000000000000000000000000000000000000000000000000000000" >>"$work/pins/sdkconfig.h"
  variants="$variants pins"
else
  echo "esp-idf-check: no mbedtls include folders given: the gateway-pins choice is not checked"
fi

cc=(xtensa-lx106-elf-gcc --specs=/usr/lib/xtensa-lx106-elf/picolibc.specs -fsyntax-only -std=gnu11
  -Wall -Wextra -Wformat=2 -Werror
  -U__INT32_TYPE__ -D__INT32_TYPE__=long -U__UINT32_TYPE__ "-D__UINT32_TYPE__=long unsigned int"
  -U__INT_LEAST32_TYPE__ -D__INT_LEAST32_TYPE__=long -U__UINT_LEAST32_TYPE__ "-D__UINT_LEAST32_TYPE__=long unsigned int")
for variant in $variants; do
  "${cc[@]}" -I"$work/$variant" "${inc[@]}" -I"$mdns/include" -I"$component/include" \
    -I"$component/port/esp-idf/include" -I"$component/core" -I/usr/include/cjson -I"$work/sodium" \
    "$component"/port/esp-idf/*.c "$here/../main/main.c"
  [ -z "${VERBOSE:-}" ] || grep MODELFERRY "$work/$variant/sdkconfig.h"
  echo "esp-idf-check: the port and the example compile against $idf ($variant)"
done
