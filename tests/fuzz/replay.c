/*
 * Replays fuzz inputs through one target's LLVMFuzzerTestOneInput without
 * libFuzzer, so that the normal (gcc) test run checks every corpus and
 * regression file.  Usage: replay_<target> DIR_OR_FILE...
 * Missing directories are skipped (an empty regressions/ may not exist in a
 * checkout); files whose names start with '.' are skipped.  A failing input
 * aborts, which fails the test and names the file just printed.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path) {
  FILE *f = fopen(path, "rb");
  uint8_t *buf;
  long n;
  if (!f) {
    perror(path);
    return -1;
  }
  if (fseek(f, 0, SEEK_END) || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET)) {
    fclose(f);
    return -1;
  }
  /* A private heap copy, as libFuzzer gives: ASan sees overreads. */
  buf = malloc(n ? (size_t)n : 1);
  if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) {
    free(buf);
    fclose(f);
    return -1;
  }
  fclose(f);
  fprintf(stderr, "replay %s (%ld bytes)\n", path, n);
  LLVMFuzzerTestOneInput(buf, (size_t)n);
  free(buf);
  return 0;
}

static int cmp(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv) {
  int i, files = 0, errors = 0;
  for (i = 1; i < argc; i++) {
    struct stat st;
    if (stat(argv[i], &st) != 0)
      continue;
    if (S_ISDIR(st.st_mode)) {
      DIR *d = opendir(argv[i]);
      struct dirent *e;
      char **names = NULL;
      size_t n = 0, k;
      if (!d)
        continue;
      while ((e = readdir(d)) != NULL) {
        char **tmp;
        if (e->d_name[0] == '.')
          continue;
        tmp = realloc(names, (n + 1) * sizeof(*names));
        if (!tmp)
          abort();
        names = tmp;
        names[n] = malloc(strlen(argv[i]) + strlen(e->d_name) + 2);
        if (!names[n])
          abort();
        sprintf(names[n], "%s/%s", argv[i], e->d_name);
        n++;
      }
      closedir(d);
      /* Sorted, so that runs are reproducible. */
      if (n)
        qsort(names, n, sizeof(*names), cmp);
      for (k = 0; k < n; k++) {
        errors += run_file(names[k]) != 0;
        files++;
        free(names[k]);
      }
      free(names);
    } else {
      errors += run_file(argv[i]) != 0;
      files++;
    }
  }
  printf("%d inputs replayed, %d unreadable\n", files, errors);
  return errors ? 1 : 0;
}
