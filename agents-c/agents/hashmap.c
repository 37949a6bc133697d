/*
 * hashmap — a C agent whose malloc-built hash table grows every tick.
 *
 * Every tick it inserts 32 entries keyed by random 64-bit numbers (igor_rand_bytes, capability
 * rand), each holding a malloc'd note of varying length stamped with the recorded clock
 * (clock_gettime → WASI clock_time_get), deletes up to 4 entries (free), doubles the bucket array
 * when the load passes 3/4, and prints a summary with an FNV-1a checksum over the whole table
 * (printf → WASI fd_write → the agent log); every 10th tick it also reports to stderr.
 *
 * The whole structure — buckets, entries, notes, the allocator's own bookkeeping, stdio buffers —
 * is in linear memory, so a checkpoint carries it and a resumed agent continues it exactly.
 * Capabilities: wasi, rand.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "igor.h"

struct entry {
  uint64_t key;
  char *note;
  size_t len;
  struct entry *next;
};

static struct entry **buckets;
static size_t nbuckets;
static size_t count;
static uint32_t ticks;

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
  const uint8_t *b = p;
  for (size_t i = 0; i < n; i++) { h ^= b[i]; h *= 0x100000001b3ULL; }
  return h;
}

static size_t slot(uint64_t key, size_t n) {
  return (size_t)((key * 0x9e3779b97f4a7c15ULL) >> 32) & (n - 1);
}

static void grow(void) {
  size_t n = nbuckets ? nbuckets * 2 : 8;
  struct entry **fresh = calloc(n, sizeof *fresh);
  if (!fresh) { fprintf(stderr, "hashmap: out of memory growing to %zu buckets\n", n); abort(); }
  for (size_t i = 0; i < nbuckets; i++) {
    struct entry *e = buckets[i];
    while (e) {
      struct entry *next = e->next;
      size_t s = slot(e->key, n);
      e->next = fresh[s];
      fresh[s] = e;
      e = next;
    }
  }
  free(buckets);
  buckets = fresh;
  nbuckets = n;
}

static void insert(uint64_t key, const char *note) {
  if (nbuckets == 0 || (count + 1) * 4 > nbuckets * 3) grow();
  struct entry *e = malloc(sizeof *e);
  size_t len = strlen(note);
  char *copy = malloc(len + 1);
  if (!e || !copy) { fprintf(stderr, "hashmap: out of memory at %zu entries\n", count); abort(); }
  memcpy(copy, note, len + 1);
  e->key = key;
  e->note = copy;
  e->len = len;
  size_t s = slot(key, nbuckets);
  e->next = buckets[s];
  buckets[s] = e;
  count++;
}

/* Removes up to `max` entries, scanning buckets from `from`; returns how many it freed. */
static int evict(size_t from, int max) {
  int freed = 0;
  for (size_t k = 0; k < nbuckets && freed < max; k++) {
    struct entry **pp = &buckets[(from + k) & (nbuckets - 1)];
    if (*pp && freed < max) {
      struct entry *e = *pp;
      *pp = e->next;
      free(e->note);
      free(e);
      count--;
      freed++;
    }
  }
  return freed;
}

static uint64_t checksum(void) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (size_t i = 0; i < nbuckets; i++) {
    for (struct entry *e = buckets[i]; e; e = e->next) {
      h = fnv(h, &e->key, sizeof e->key);
      h = fnv(h, e->note, e->len);
    }
  }
  return h;
}

IGOR_EXPORT("agent_init") void agent_init(void) {
  grow();
  printf("hashmap: born with %zu buckets\n", nbuckets);
}

IGOR_EXPORT("agent_tick") int agent_tick(void) {
  ticks++;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  char note[512];
  for (int i = 0; i < 32; i++) {
    uint64_t key = igor_rand_u64();
    int pad = (int)(key % 400);
    int n = snprintf(note, sizeof note, "tick %u #%d at %lld.%09ld ", ticks, i, (long long)ts.tv_sec, ts.tv_nsec);
    while (pad-- > 0 && n < (int)sizeof note - 1) note[n++] = '.';
    note[n] = 0;
    insert(key, note);
  }
  int freed = evict((size_t)igor_rand_u64(), 4);
  printf("hashmap: tick %u, entries %zu, buckets %zu, freed %d, memory %zu KiB, checksum %016llx\n",
         ticks, count, nbuckets, freed, __builtin_wasm_memory_size(0) * 64, (unsigned long long)checksum());
  if (ticks % 10 == 0) fprintf(stderr, "hashmap: milestone, %u ticks\n", ticks);
  return IGOR_IDLE;
}

/* For tests and inspection: the number of entries and the table's checksum. */
IGOR_EXPORT("hashmap_entries") uint32_t hashmap_entries(void) { return (uint32_t)count; }
IGOR_EXPORT("hashmap_checksum") uint64_t hashmap_checksum(void) { return checksum(); }
