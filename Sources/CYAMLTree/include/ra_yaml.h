#ifndef RA_YAML_H
#define RA_YAML_H

#include <stddef.h>

// A YAML document loaded by libyaml, read through const accessors: Swift (Sources/Config/YAML.swift)
// walks it without mutable pointers, then frees it. Node ids are libyaml's (1-based; 0 = none).
typedef struct ra_yaml ra_yaml;

typedef enum { RA_YAML_NONE = 0, RA_YAML_SCALAR, RA_YAML_SEQUENCE, RA_YAML_MAPPING } ra_yaml_kind;

typedef struct {
    const ra_yaml *document;   // NULL when `problem` is set
    const char *problem;       // libyaml's static description of a syntax error, else NULL
    unsigned long line;        // 1-based line of the problem
} ra_yaml_result;

typedef struct {
    const unsigned char *bytes;
    size_t length;
    int plain;                 // written without quotes or a block indicator (so `~`, `null` are null)
} ra_yaml_text;

ra_yaml_result ra_yaml_load(const unsigned char *text, size_t length);
void ra_yaml_free(const ra_yaml *document);

int ra_yaml_root(const ra_yaml *document);
ra_yaml_kind ra_yaml_kind_of(const ra_yaml *document, int node);
unsigned long ra_yaml_line(const ra_yaml *document, int node);
ra_yaml_text ra_yaml_scalar(const ra_yaml *document, int node);
/// Items of a sequence, pairs of a mapping.
size_t ra_yaml_count(const ra_yaml *document, int node);
int ra_yaml_item(const ra_yaml *document, int node, size_t index);
int ra_yaml_key(const ra_yaml *document, int node, size_t index);
int ra_yaml_value(const ra_yaml *document, int node, size_t index);

#endif
