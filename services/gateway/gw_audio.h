/* gw_audio: prompts as G.711 sample buffers, loaded once and shared.
 *
 * A prompt is 8 kHz mono audio kept as 16-bit linear samples; the media
 * path encodes 20 ms frames to PCMU or PCMA (spandsp's G.711) as it sends. */
#ifndef GW_AUDIO_H
#define GW_AUDIO_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int16_t *samples;
    size_t count;
    uint8_t *pcmu, *pcma;      /* the same, encoded once at load */
} gw_prompt_t;

/* Loads name: "tone:<hz>" (one second of that tone and a pause), or a WAV
 * file (any rate libsndfile reads; it must be 8 kHz mono) under dir. Returns
 * 0 or a negative error (logged). */
int gw_prompt_load(gw_prompt_t *p, const char *dir, const char *name);
void gw_prompt_free(gw_prompt_t *p);

/* Encodes n linear samples to G.711 (pt 0 = PCMU, 8 = PCMA) into out. */
void gw_g711_encode(int pt, const int16_t *in, uint8_t *out, size_t n);
/* Decodes n G.711 bytes to linear samples. */
void gw_g711_decode(int pt, const uint8_t *in, int16_t *out, size_t n);

#endif
