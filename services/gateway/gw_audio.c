/* gw_audio: prompt loading (libsndfile) and G.711 (spandsp). */
#include "gw_audio.h"
#include "cc/cc_errno.h"
#include "cc/cc_log.h"

#include <math.h>
#include <sndfile.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <spandsp/telephony.h>
#include <spandsp/bit_operations.h>
#include <spandsp/g711.h>

#define RATE 8000

/* Encodes the prompt once for each codec: the media path only copies. */
static int
s_encode(gw_prompt_t *p)
{
    p->pcmu = malloc(p->count);
    p->pcma = malloc(p->count);
    if (!p->pcmu || !p->pcma) abort();
    gw_g711_encode(0, p->samples, p->pcmu, p->count);
    gw_g711_encode(8, p->samples, p->pcma, p->count);
    return 0;
}

int
gw_prompt_load(gw_prompt_t *p, const char *dir, const char *name)
{
    memset(p, 0, sizeof *p);
    if (strncmp(name, "tone:", 5) == 0) {
        int hz = atoi(name + 5);
        if (hz < 50 || hz > 3900) return CC_EINVAL;
        p->count = RATE * 3 / 2;          /* 1 s of tone, 0.5 s of silence */
        p->samples = calloc(p->count, sizeof *p->samples);
        if (!p->samples) abort();
        for (size_t i = 0; i < RATE; i++)
            p->samples[i] = (int16_t) (8000 * sin(2 * M_PI * hz * (double) i / RATE));
        return s_encode(p);
    }
    if (strstr(name, "..") || name[0] == '/') return CC_EINVAL;
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    SF_INFO info;
    memset(&info, 0, sizeof info);
    SNDFILE *f = sf_open(path, SFM_READ, &info);
    if (!f) {
        CC_ERROR("prompt unreadable", "path=%s error=\"%s\"", path, sf_strerror(NULL));
        return CC_EIO;
    }
    if (info.samplerate != RATE || info.channels != 1 || info.frames <= 0) {
        CC_ERROR("prompt must be 8 kHz mono", "path=%s rate=%d channels=%d", path, info.samplerate, info.channels);
        sf_close(f);
        return CC_EINVAL;
    }
    p->count = (size_t) info.frames;
    p->samples = calloc(p->count, sizeof *p->samples);
    if (!p->samples) abort();
    sf_count_t got = sf_read_short(f, p->samples, (sf_count_t) p->count);
    sf_close(f);
    if (got <= 0) {
        gw_prompt_free(p);
        return CC_EIO;
    }
    p->count = (size_t) got;
    return s_encode(p);
}

void
gw_prompt_free(gw_prompt_t *p)
{
    free(p->samples);
    free(p->pcmu);
    free(p->pcma);
    p->samples = NULL;
    p->pcmu = p->pcma = NULL;
    p->count = 0;
}

void
gw_g711_encode(int pt, const int16_t *in, uint8_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++) out[i] = pt == 8 ? linear_to_alaw(in[i]) : linear_to_ulaw(in[i]);
}

void
gw_g711_decode(int pt, const uint8_t *in, int16_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++) out[i] = pt == 8 ? alaw_to_linear(in[i]) : ulaw_to_linear(in[i]);
}
