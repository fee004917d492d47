#ifndef PORTCULLIS_COPENSSL_SHIM_H
#define PORTCULLIS_COPENSSL_SHIM_H
#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/ecdsa.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/param_build.h>
#include <openssl/rsa.h>
#include <openssl/crypto.h>

// OpenSSL 3 function-like macros do not import into Swift; wrap them.
static inline long pc_SSL_CTX_set_mode(SSL_CTX *c, long m) { return SSL_CTX_set_mode(c, m); }
static inline long pc_SSL_set_mode(SSL *s, long m) { return SSL_set_mode(s, m); }
static inline int pc_SSL_CTX_set_min_proto_version(SSL_CTX *c, int v) { return (int)SSL_CTX_set_min_proto_version(c, v); }
static inline long pc_SSL_set_tlsext_host_name(SSL *s, const char *n) { return SSL_set_tlsext_host_name(s, n); }
static inline long pc_SSL_CTX_set_session_cache_mode(SSL_CTX *c, long m) { return SSL_CTX_set_session_cache_mode(c, m); }
static inline int pc_TLS1_2_VERSION(void) { return TLS1_2_VERSION; }
static inline long pc_SSL_MODE_ENABLE_PARTIAL_WRITE(void) { return SSL_MODE_ENABLE_PARTIAL_WRITE; }
static inline long pc_SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER(void) { return SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER; }
static inline long pc_SSL_MODE_RELEASE_BUFFERS(void) { return SSL_MODE_RELEASE_BUFFERS; }
static inline void pc_OPENSSL_free(void *p) { OPENSSL_free(p); }
static inline int pc_EVP_PKEY_size(const EVP_PKEY *k) { return EVP_PKEY_get_size(k); }
static inline int pc_BIO_reset(BIO *b) { return (int)BIO_reset(b); }
/* OSSL_PARAM_BLD keeps key-name and value pointers until OSSL_PARAM_BLD_to_param: hand it
   C literals with static storage, never temporaries bridged from Swift strings. */
static inline const char *pc_param_rsa_n(void) { return OSSL_PKEY_PARAM_RSA_N; }
static inline const char *pc_param_rsa_e(void) { return OSSL_PKEY_PARAM_RSA_E; }
static inline const char *pc_param_group(void) { return OSSL_PKEY_PARAM_GROUP_NAME; }
static inline const char *pc_param_pub(void) { return OSSL_PKEY_PARAM_PUB_KEY; }
static inline const char *pc_group_p256(void) { return "prime256v1"; }
static inline const char *pc_group_p384(void) { return "secp384r1"; }
static inline int pc_EVP_PKEY_PUBLIC_KEY(void) { return EVP_PKEY_PUBLIC_KEY; }
static inline int pc_EVP_PKEY_ED25519(void) { return EVP_PKEY_ED25519; }
static inline int pc_RSA_PKCS1_PSS_PADDING(void) { return RSA_PKCS1_PSS_PADDING; }
static inline int pc_RSA_PSS_SALTLEN_DIGEST(void) { return RSA_PSS_SALTLEN_DIGEST; }
#endif
