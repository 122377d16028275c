/*
 * Fuzz target: the cookie key file parser (ntsntp_keyring_load_ex).
 * The input is the file text.  Whatever loads must save, and the saved
 * text must load into a fresh ring and save to the same text.
 */
#include "fuzz_common.h"

#define NOW 1700000000

static ntsntp_keyring *new_ring(void) {
  ntsntp_keyring_settings ks;
  ntsntp_keyring *kr;
  ntsntp_keyring_settings_default(&ks);
  ks.rand = fz_rand;
  FZ_CHECK(ntsntp_keyring_new(&kr, &ks, NOW, NULL, 0) == 0);
  return kr;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static uint8_t a[4096], b[4096];
  ntsntp_keyring *kr, *kr2;
  char why[128];
  ntsntp_ssize na, nb;
  int rv;

  fz_reset();
  kr = new_ring();
  memset(why, 'x', sizeof(why));
  rv = ntsntp_keyring_load_ex(kr, data, size, NOW, why, sizeof(why));
  FZ_CHECK(rv == 0 || rv == NTSNTP_ERR_BAD_KEYFILE);
  FZ_CHECK(memchr(why, 0, sizeof(why)) != NULL);
  FZ_CHECK(rv != 0 || why[0] == 0);
  FZ_CHECK(rv == 0 || why[0] != 0);
  if (rv == 0) {
    na = ntsntp_keyring_save(kr, a, sizeof(a));
    FZ_CHECK(na > 0);
    kr2 = new_ring();
    FZ_CHECK(ntsntp_keyring_load(kr2, a, (size_t)na, NOW) == 0);
    nb = ntsntp_keyring_save(kr2, b, sizeof(b));
    FZ_CHECK(nb == na && memcmp(a, b, (size_t)na) == 0);
    FZ_CHECK(ntsntp_keyring_current_id(kr) == ntsntp_keyring_current_id(kr2));
    ntsntp_keyring_del(kr2);
  }
  ntsntp_keyring_del(kr);
  return 0;
}
