/* Example application: joins Wi-Fi, starts the modelferry client and hands each newly
 * activated model (memory-mapped flash, pointer + length) to where the ExecuTorch runtime
 * would load it, then confirms it, or rejects it so the client goes back to the previous
 * one. */
#include <string.h>

#include "esp_event.h"
#include "esp_log.h"
#include "esp_netif.h"
#include "esp_wifi.h"
#include "freertos/FreeRTOS.h"
#include "freertos/event_groups.h"
#include "freertos/task.h"
#include "mdns.h"
#include "nvs_flash.h"
#include "sdkconfig.h"

#include "modelferry/modelferry.h"
#include "modelferry/mf_esp.h"

static const char *TAG = "app";
static EventGroupHandle_t net_events;
#define GOT_IP BIT0

static void on_wifi(void *arg, esp_event_base_t base, int32_t id, void *data)
{
    (void)arg;
    (void)data;
    if (base == WIFI_EVENT && (id == WIFI_EVENT_STA_START || id == WIFI_EVENT_STA_DISCONNECTED)) {
        xEventGroupClearBits(net_events, GOT_IP);
        esp_wifi_connect();
    } else if (base == IP_EVENT && id == IP_EVENT_STA_GOT_IP) {
        xEventGroupSetBits(net_events, GOT_IP);
    }
}

static void wifi_start(void)
{
    net_events = xEventGroupCreate();
    ESP_ERROR_CHECK(esp_netif_init());
    ESP_ERROR_CHECK(esp_event_loop_create_default());
    esp_netif_create_default_wifi_sta();
    wifi_init_config_t init = WIFI_INIT_CONFIG_DEFAULT();
    ESP_ERROR_CHECK(esp_wifi_init(&init));
    ESP_ERROR_CHECK(esp_event_handler_register(WIFI_EVENT, ESP_EVENT_ANY_ID, on_wifi, NULL));
    ESP_ERROR_CHECK(esp_event_handler_register(IP_EVENT, IP_EVENT_STA_GOT_IP, on_wifi, NULL));
    wifi_config_t sta = {0};
    strncpy((char *)sta.sta.ssid, CONFIG_MODELFERRY_WIFI_SSID, sizeof sta.sta.ssid);
    strncpy((char *)sta.sta.password, CONFIG_MODELFERRY_WIFI_PASSWORD, sizeof sta.sta.password);
    ESP_ERROR_CHECK(esp_wifi_set_mode(WIFI_MODE_STA));
    ESP_ERROR_CHECK(esp_wifi_set_config(WIFI_IF_STA, &sta));
    ESP_ERROR_CHECK(esp_wifi_start());
    xEventGroupWaitBits(net_events, GOT_IP, pdFALSE, pdTRUE, portMAX_DELAY);
}

static mf_client client; /* static: the client needs no heap beyond its report buffer */

/* Where the application loads the model and runs a first inference. With ExecuTorch (C++):
 *   executorch::extension::BufferDataLoader loader(model->data, model->size);
 *   auto program = executorch::runtime::Program::load(&loader);
 *   ... load_method("forward"), set the inputs, execute() ...
 * The bytes stay in flash (memory-mapped); nothing is copied to RAM. Returns NULL when the
 * model loaded and ran, else why not. This example only looks at the header; a real
 * application does the above, on a task with the stack its model needs (the client's task
 * has 12 KiB) and then calls mf_client_confirm or mf_client_reject from there. */
static const char *load_and_run(const mf_active_model *model)
{
    if (model->size < 8 || model->data[4] != 'E' || model->data[5] != 'T') return "no ExecuTorch header";
    return NULL;
}

static void on_model(void *ctx, const mf_active_model *model)
{
    (void)ctx;
    if (model->status == MF_MODEL_FAILED) {
        /* The device's first model, not confirmed, and nothing to go back to. */
        ESP_LOGE(TAG, "model %s %s failed its confirmation; running without a model", model->name, model->version);
        return;
    }
    ESP_LOGI(TAG, "model %s %s active: %u bytes at %p (slot %d, sha256 %.16s..., %s)", model->name, model->version,
             (unsigned)model->size, (const void *)model->data, model->slot, model->sha256_hex,
             model->status == MF_MODEL_PENDING ? "pending" : "confirmed");
    const char *why = load_and_run(model);
    if (why) {
        /* Back to the model the application ran before, which is still mapped. */
        ESP_LOGE(TAG, "model %s %s does not run: %s", model->name, model->version, why);
        mf_client_reject(&client, why);
        return;
    }
    /* The application runs this model now and no longer reads the previous one. */
    mf_client_confirm(&client);
}

static void on_event(void *ctx, const char *event, const char *detail)
{
    (void)ctx;
    ESP_LOGI("modelferry", "%s %s", event, detail ? detail : "");
}

static void client_task(void *arg)
{
    (void)arg;
    static mf_config cfg;
    static mf_ports ports;
    if (mf_esp_config_from_kconfig(&cfg) != MF_OK) {
        ESP_LOGE(TAG, "CONFIG_MODELFERRY_TRUSTED_KEYS holds a key that is not base64 of 32 bytes");
        vTaskDelete(NULL);
        return;
    }
    cfg.on_activate = on_model;
    cfg.on_event = on_event;
    cfg.firmware_version = "modelferry-example";
    if (mf_esp_ports_open(&ports) != MF_OK) {
        ESP_LOGE(TAG, "model partitions or NVS missing: check partitions.csv");
        vTaskDelete(NULL);
        return;
    }
    /* The line `modelferry devices preauthorize` reads, for a manufacturing log. */
    char key[45];
    if (mf_esp_device_key_base64(&ports, key) == MF_OK) ESP_LOGI(TAG, "device key: %s", key);
    mf_err err = mf_client_init(&client, &cfg, &ports);
    if (err != MF_OK) {
        ESP_LOGE(TAG, "client: %s", mf_err_code(err));
        vTaskDelete(NULL);
        return;
    }
    if (!mf_client_active(&client)) ESP_LOGW(TAG, "no valid model yet: running without one");
    mf_client_run(&client);
    vTaskDelete(NULL);
}

void app_main(void)
{
    esp_err_t err = nvs_flash_init();
    if (err == ESP_ERR_NVS_NO_FREE_PAGES || err == ESP_ERR_NVS_NEW_VERSION_FOUND) {
        ESP_ERROR_CHECK(nvs_flash_erase());
        err = nvs_flash_init();
    }
    ESP_ERROR_CHECK(err);
    wifi_start();
    ESP_ERROR_CHECK(mdns_init());
    ESP_ERROR_CHECK(mdns_hostname_set(CONFIG_MODELFERRY_HOSTNAME));
    /* 12 KiB: the client's deepest path measured 3.8 KiB + 0.9 KiB on the host
     * (firmware/README.md "Design limits (measured on the host)"), plus libsodium's
     * ed25519 verify and esp_http_client below it. */
    xTaskCreate(client_task, "modelferry", 12288, NULL, 5, NULL);
}
