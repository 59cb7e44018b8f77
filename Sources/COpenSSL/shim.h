// COpenSSL: the C surface of OpenSSL 3 (Debian's libssl-dev) that the EventLoop module uses for
// TLS (Sources/EventLoop/TLS.swift and Connection.swift).
//
// Only what Swift cannot import directly, or would need mutable pointers for, lives here: the
// function-like macros, and the loops that read PEM text from memory. Each is prefixed `ra_`.
#ifndef REDIS_AMBASSADOR_COPENSSL_SHIM_H
#define REDIS_AMBASSADOR_COPENSSL_SHIM_H

#include <string.h>
#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

// SSL_CTX_set_min_proto_version is a macro over SSL_CTX_ctrl.
static inline int ra_tls_set_min_version(SSL_CTX *ctx, int version) {
    return (int)SSL_CTX_set_min_proto_version(ctx, version);
}

// Writes of a partial buffer (one record at a time from an evbuffer), a retried write from a
// buffer that moved (evbuffer_pullup may return another address), and read-ahead: one read()
// takes every record the kernel holds, not a 5-byte header and then the body.
static inline void ra_tls_set_modes(SSL_CTX *ctx) {
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_read_ahead(ctx, 1);
}

// A server keeps no session cache (apps reconnect rarely, and a cache is memory per session),
// and an idle app connection holds no read or write buffer (about 34 KiB each otherwise).
static inline void ra_tls_server_defaults(SSL_CTX *ctx) {
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
}

// SNI (SSL_set_tlsext_host_name is a macro over SSL_ctrl).
static inline int ra_tls_set_sni(SSL *ssl, const char *name) {
    return (int)SSL_set_tlsext_host_name(ssl, name);
}

// The peer's certificate must name `host`: an IP address is checked against the IP SANs, a name
// against the DNS SANs (and the CN when there are none), as OpenSSL's own verifier does.
static inline int ra_tls_expect_host(SSL *ssl, const char *host, int is_ip) {
    X509_VERIFY_PARAM *param = SSL_get0_param(ssl);
    if (is_ip) return X509_VERIFY_PARAM_set1_ip_asc(param, host);
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    return SSL_set1_host(ssl, host);
}

// Adds every certificate of a PEM bundle to the context's trust store. Returns how many, or -1.
static inline int ra_tls_add_ca_pem(SSL_CTX *ctx, const void *pem, int length) {
    BIO *bio = BIO_new_mem_buf(pem, length);
    if (!bio) return -1;
    X509_STORE *store = SSL_CTX_get_cert_store(ctx);
    int count = 0;
    X509 *cert;
    while ((cert = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
        if (X509_STORE_add_cert(store, cert) != 1) { X509_free(cert); BIO_free(bio); return -1; }
        X509_free(cert);
        count++;
    }
    BIO_free(bio);
    ERR_clear_error();  // the loop ends on "no start line": not an error
    return count;
}

// The certificate a side presents, then its chain. Returns how many certificates, or -1.
static inline int ra_tls_use_chain_pem(SSL_CTX *ctx, const void *pem, int length) {
    BIO *bio = BIO_new_mem_buf(pem, length);
    if (!bio) return -1;
    int count = 0;
    X509 *cert;
    while ((cert = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
        int ok = count == 0 ? SSL_CTX_use_certificate(ctx, cert) : (int)SSL_CTX_add1_chain_cert(ctx, cert);
        X509_free(cert);
        if (ok != 1) { BIO_free(bio); return -1; }
        count++;
    }
    BIO_free(bio);
    if (count > 0) ERR_clear_error();
    return count;
}

// The private key for the certificate above; 1 when it matches, 0 when it does not, -1 unreadable.
static inline int ra_tls_use_key_pem(SSL_CTX *ctx, const void *pem, int length) {
    BIO *bio = BIO_new_mem_buf(pem, length);
    if (!bio) return -1;
    EVP_PKEY *key = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
    BIO_free(bio);
    if (!key) return -1;
    int ok = SSL_CTX_use_PrivateKey(ctx, key);
    EVP_PKEY_free(key);
    if (ok != 1) return 0;
    return SSL_CTX_check_private_key(ctx) == 1 ? 1 : 0;
}

// The notAfter of the first certificate in a PEM text, as seconds since the epoch (0: none).
static inline long long ra_tls_not_after(const void *pem, int length) {
    BIO *bio = BIO_new_mem_buf(pem, length);
    if (!bio) return 0;
    X509 *cert = PEM_read_bio_X509(bio, NULL, NULL, NULL);
    BIO_free(bio);
    if (!cert) { ERR_clear_error(); return 0; }
    struct tm tm;
    long long seconds = 0;
    if (ASN1_TIME_to_tm(X509_get0_notAfter(cert), &tm) == 1) seconds = (long long)timegm(&tm);
    X509_free(cert);
    return seconds;
}

#endif
