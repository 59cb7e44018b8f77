// The config file's YAML, parsed by libyaml (the reference C parser, also inside Yams) into its
// node tree. In C so that the parser's mutable state stays out of Swift, and so that the config
// reader needs no Foundation: Yams pulled Foundation and ICU into every ambassador process (about
// 11 MB of its idle RSS). Declared in include/ra_yaml.h.
#include <stdlib.h>
#include <yaml.h>
#include "ra_yaml.h"

struct ra_yaml { yaml_document_t document; };

ra_yaml_result ra_yaml_load(const unsigned char *text, size_t length) {
    ra_yaml_result result = { NULL, NULL, 0 };
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) {
        result.problem = "out of memory";
        return result;
    }
    yaml_parser_set_input_string(&parser, text, length);
    struct ra_yaml *loaded = calloc(1, sizeof *loaded);
    if (!loaded) {
        yaml_parser_delete(&parser);
        result.problem = "out of memory";
        return result;
    }
    if (!yaml_parser_load(&parser, &loaded->document)) {
        result.problem = parser.problem ? parser.problem : "cannot be parsed";
        result.line = (parser.problem_mark.line ? parser.problem_mark.line : parser.context_mark.line) + 1;
        yaml_parser_delete(&parser);
        free(loaded);
        return result;
    }
    // A second document in the same file would be ignored silently: refuse it instead.
    yaml_document_t next;
    if (yaml_document_get_root_node(&loaded->document) && yaml_parser_load(&parser, &next)) {
        int more = yaml_document_get_root_node(&next) != NULL;
        unsigned long line = next.start_mark.line + 1;
        yaml_document_delete(&next);
        if (more) {
            yaml_parser_delete(&parser);
            yaml_document_delete(&loaded->document);
            free(loaded);
            result.problem = "a second document (---): the config is one mapping";
            result.line = line;
            return result;
        }
    } else if (parser.error != YAML_NO_ERROR) {
        result.problem = parser.problem ? parser.problem : "cannot be parsed";
        result.line = parser.problem_mark.line + 1;
        yaml_parser_delete(&parser);
        yaml_document_delete(&loaded->document);
        free(loaded);
        return result;
    }
    yaml_parser_delete(&parser);
    result.document = loaded;
    return result;
}

void ra_yaml_free(const ra_yaml *document) {
    if (!document) return;
    struct ra_yaml *owned = (struct ra_yaml *)document;
    yaml_document_delete(&owned->document);
    free(owned);
}

static yaml_node_t *node_at(const ra_yaml *document, int node) {
    if (!document || node < 1) return NULL;
    return yaml_document_get_node((yaml_document_t *)&document->document, node);
}

int ra_yaml_root(const ra_yaml *document) {
    if (!document) return 0;
    yaml_node_t *root = yaml_document_get_root_node((yaml_document_t *)&document->document);
    return root ? (int)(root - document->document.nodes.start) + 1 : 0;
}

ra_yaml_kind ra_yaml_kind_of(const ra_yaml *document, int node) {
    yaml_node_t *found = node_at(document, node);
    if (!found) return RA_YAML_NONE;
    switch (found->type) {
    case YAML_SCALAR_NODE: return RA_YAML_SCALAR;
    case YAML_SEQUENCE_NODE: return RA_YAML_SEQUENCE;
    case YAML_MAPPING_NODE: return RA_YAML_MAPPING;
    default: return RA_YAML_NONE;
    }
}

unsigned long ra_yaml_line(const ra_yaml *document, int node) {
    yaml_node_t *found = node_at(document, node);
    return found ? found->start_mark.line + 1 : 0;
}

ra_yaml_text ra_yaml_scalar(const ra_yaml *document, int node) {
    ra_yaml_text text = { (const unsigned char *)"", 0, 0 };
    yaml_node_t *found = node_at(document, node);
    if (!found || found->type != YAML_SCALAR_NODE) return text;
    text.bytes = found->data.scalar.value;
    text.length = found->data.scalar.length;
    text.plain = found->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
    return text;
}

size_t ra_yaml_count(const ra_yaml *document, int node) {
    yaml_node_t *found = node_at(document, node);
    if (!found) return 0;
    if (found->type == YAML_SEQUENCE_NODE)
        return (size_t)(found->data.sequence.items.top - found->data.sequence.items.start);
    if (found->type == YAML_MAPPING_NODE)
        return (size_t)(found->data.mapping.pairs.top - found->data.mapping.pairs.start);
    return 0;
}

int ra_yaml_item(const ra_yaml *document, int node, size_t index) {
    yaml_node_t *found = node_at(document, node);
    if (!found || found->type != YAML_SEQUENCE_NODE || index >= ra_yaml_count(document, node)) return 0;
    return found->data.sequence.items.start[index];
}

int ra_yaml_key(const ra_yaml *document, int node, size_t index) {
    yaml_node_t *found = node_at(document, node);
    if (!found || found->type != YAML_MAPPING_NODE || index >= ra_yaml_count(document, node)) return 0;
    return found->data.mapping.pairs.start[index].key;
}

int ra_yaml_value(const ra_yaml *document, int node, size_t index) {
    yaml_node_t *found = node_at(document, node);
    if (!found || found->type != YAML_MAPPING_NODE || index >= ra_yaml_count(document, node)) return 0;
    return found->data.mapping.pairs.start[index].value;
}
