/* openapi_test: docs/order-sync-openapi.yaml is valid YAML (libyaml), an
 * OpenAPI 3 document with every route order-sync serves, and its model
 * schemas name exactly the fields order-sync checks, with no required field
 * the code does not require.
 *
 * api_description_parses_and_lists_every_route
 * model_schemas_match_the_validation_tables */
#include "cc_check.h"
#include "os_webhook.h"

#include <stdio.h>
#include <string.h>
#include <yaml.h>

#ifndef OS_DOC
#error "OS_DOC must be defined"
#endif

static yaml_document_t s_doc;

/* The value of key in mapping node m, or NULL. */
static yaml_node_t *
s_get(yaml_node_t *m, const char *key)
{
    if (!m || m->type != YAML_MAPPING_NODE) return NULL;
    for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(&s_doc, p->key);
        if (k->type == YAML_SCALAR_NODE && strcmp((const char *) k->data.scalar.value, key) == 0)
            return yaml_document_get_node(&s_doc, p->value);
    }
    return NULL;
}

static const char *
s_scalar(yaml_node_t *n)
{
    return n && n->type == YAML_SCALAR_NODE ? (const char *) n->data.scalar.value : NULL;
}

static bool
s_in_list(yaml_node_t *seq, const char *name)
{
    if (!seq || seq->type != YAML_SEQUENCE_NODE) return false;
    for (yaml_node_item_t *i = seq->data.sequence.items.start; i < seq->data.sequence.items.top; i++) {
        const char *v = s_scalar(yaml_document_get_node(&s_doc, *i));
        if (v && strcmp(v, name) == 0) return true;
    }
    return false;
}

static void
api_description_parses_and_lists_every_route(void)
{
    TEST_BEGIN(__func__);
    yaml_node_t *root = yaml_document_get_root_node(&s_doc);
    const char *version = s_scalar(s_get(root, "openapi"));
    CHECK(version && strncmp(version, "3.", 2) == 0, "openapi: %s", version ? version : "(none)");
    CHECK(s_scalar(s_get(s_get(root, "info"), "title")), "info.title");
    yaml_node_t *paths = s_get(root, "paths");
    const struct { const char *path, *method; } routes[] = {
        { "/webhooks/{platform}", "post" }, { "/import/{platform}", "post" },
        { "/import/{platform}/customers.csv", "post" }, { "/import/{platform}/products.csv", "post" },
        { "/export/{platform}/customers.csv", "get" }, { "/export/{platform}/products.csv", "get" },
    };
    for (size_t i = 0; i < sizeof routes / sizeof *routes; i++) {
        yaml_node_t *op = s_get(s_get(paths, routes[i].path), routes[i].method);
        CHECK(op && s_get(op, "responses"), "%s %s with responses", routes[i].method, routes[i].path);
    }
    TEST_PASS(__func__);
}

static void
model_schemas_match_the_validation_tables(void)
{
    TEST_BEGIN(__func__);
    yaml_node_t *schemas = s_get(s_get(yaml_document_get_root_node(&s_doc), "components"), "schemas");
    const struct { const char *kind, *schema; } models[] = {
        { "order", "OrderData" }, { "customer", "CustomerData" }, { "product", "ProductData" },
        { "stock", "StockData" }, { "payment", "PaymentData" }, { "shipment", "ShipmentData" },
    };
    for (size_t m = 0; m < sizeof models / sizeof *models; m++) {
        yaml_node_t *schema = s_get(schemas, models[m].schema), *props = s_get(schema, "properties");
        CHECK(props && props->type == YAML_MAPPING_NODE, "%s.properties", models[m].schema);
        os_field_info_t f[64];
        size_t n = os_fields(models[m].kind, f, 64);
        CHECK(n > 0, "fields of %s", models[m].kind);
        for (size_t i = 0; i < n; i++) CHECK(s_get(props, f[i].name), "%s lacks %s", models[m].schema, f[i].name);
        size_t documented = (size_t) (props->data.mapping.pairs.top - props->data.mapping.pairs.start);
        CHECK(documented == n, "%s documents %zu fields, the code checks %zu", models[m].schema, documented, n);
        yaml_node_t *required = s_get(schema, "required");
        for (size_t i = 0; i < n; i++)
            if (s_in_list(required, f[i].name))
                CHECK(f[i].required, "%s.%s documented required, not required by the code", models[m].schema, f[i].name);
        for (size_t i = 0; i < n; i++)
            if (f[i].required && strcmp(models[m].kind, "customer") != 0)   /* inside an order a customer needs no version */
                CHECK(s_in_list(required, f[i].name), "%s.%s required by the code, not documented so", models[m].schema,
                      f[i].name);
    }
    TEST_PASS(__func__);
}

int
main(void)
{
    FILE *f = fopen(OS_DOC, "rb");
    CHECK(f, "open %s", OS_DOC);
    yaml_parser_t parser;
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_file(&parser, f);
    CHECK(yaml_parser_load(&parser, &s_doc), "%s: %s at line %zu", OS_DOC, parser.problem ? parser.problem : "?",
          parser.problem_mark.line + 1);
    CHECK(yaml_document_get_root_node(&s_doc), "an empty document");
    api_description_parses_and_lists_every_route();
    model_schemas_match_the_validation_tables();
    yaml_document_delete(&s_doc);
    yaml_parser_delete(&parser);
    fclose(f);
    printf("openapi_test: 2 passed, 0 failed\n");
    return 0;
}
