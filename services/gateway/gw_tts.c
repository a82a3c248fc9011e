/* gw_tts: espeak-ng synthesis, libsamplerate to 8 kHz, libsndfile to WAV. */
#include "gw_tts.h"
#include "cc/cc_errno.h"
#include "cc/cc_log.h"

#include <espeak-ng/speak_lib.h>
#include <inttypes.h>
#include <pthread.h>
#include <samplerate.h>
#include <sndfile.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static pthread_mutex_t s_lock = PTHREAD_MUTEX_INITIALIZER;
static int s_rate;                 /* espeak-ng's output rate, once initialised */

typedef struct { short *samples; size_t count, cap; } pcm_t;
static pcm_t *s_out;               /* where the callback appends (under s_lock) */

static int
s_on_samples(short *wav, int n, espeak_EVENT *events)
{
    (void) events;
    if (!wav || n <= 0 || !s_out) return 0;
    if (s_out->count + (size_t) n > s_out->cap) {
        s_out->cap = (s_out->count + (size_t) n) * 2;
        s_out->samples = realloc(s_out->samples, s_out->cap * sizeof *s_out->samples);
        if (!s_out->samples) abort();
    }
    memcpy(s_out->samples + s_out->count, wav, (size_t) n * sizeof *wav);
    s_out->count += (size_t) n;
    return 0;
}

/* espeak-ng's voice for a language code. */
static const char *
s_voice(const char *language)
{
    static const struct { const char *code, *voice; } map[] = {
        { "en", "en" }, { "en-us", "en-us" }, { "zh", "cmn" }, { "cmn", "cmn" }, { "zh-cn", "cmn" },
        { "yue", "yue" }, { "de", "de" }, { "fr", "fr" }, { "es", "es" },
    };
    for (size_t i = 0; i < sizeof map / sizeof *map; i++)
        if (strcmp(map[i].code, language) == 0) return map[i].voice;
    return NULL;
}

int gw_tts_supported(const char *language) { return s_voice(language) != NULL; }

void
gw_tts_name(const char *text, const char *language, char *name, size_t cap)
{
    uint64_t h = 1469598103934665603ULL;
    for (const char *p = language; *p; p++) h = (h ^ (unsigned char) *p) * 1099511628211ULL;
    h = (h ^ '|') * 1099511628211ULL;
    for (const char *p = text; *p; p++) h = (h ^ (unsigned char) *p) * 1099511628211ULL;
    snprintf(name, cap, "tts-%016" PRIx64 ".wav", h);
}

int
gw_tts_render(const char *dir, const char *text, const char *language)
{
    const char *voice = s_voice(language);
    if (!voice || !*text) return CC_EINVAL;
    char name[64], path[1200], tmp[1300];
    gw_tts_name(text, language, name, sizeof name);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (access(path, R_OK) == 0) return 0;   /* rendered before */

    pthread_mutex_lock(&s_lock);
    if (!s_rate) {
        s_rate = espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, NULL, 0);
        if (s_rate > 0) espeak_SetSynthCallback(s_on_samples);
    }
    pcm_t pcm = { 0 };
    int rc = CC_EIO;
    if (s_rate > 0 && espeak_SetVoiceByName(voice) == EE_OK) {
        s_out = &pcm;
        espeak_ERROR e = espeak_Synth(text, strlen(text) + 1, 0, POS_CHARACTER, 0, espeakCHARS_UTF8, NULL, NULL);
        s_out = NULL;
        if (e == EE_OK && pcm.count) rc = 0;
    }
    int rate = s_rate;
    pthread_mutex_unlock(&s_lock);
    if (rc) {
        CC_ERROR("speech synthesis failed", "language=%s voice=%s", language, voice);
        free(pcm.samples);
        return rc;
    }
    /* To 8 kHz for G.711. */
    size_t in_n = pcm.count;
    float *in = malloc(in_n * sizeof *in), *out = malloc((in_n * 8000 / (size_t) rate + 16) * sizeof *out);
    if (!in || !out) abort();
    src_short_to_float_array(pcm.samples, in, (int) in_n);
    SRC_DATA d = { .data_in = in, .input_frames = (long) in_n, .data_out = out,
                   .output_frames = (long) (in_n * 8000 / (size_t) rate + 16), .src_ratio = 8000.0 / rate };
    int err = src_simple(&d, SRC_SINC_FASTEST, 1);
    short *pcm8 = malloc(((size_t) d.output_frames_gen + 1) * sizeof *pcm8);
    if (!pcm8) abort();
    src_float_to_short_array(out, pcm8, (int) d.output_frames_gen);
    snprintf(tmp, sizeof tmp, "%s.%d.tmp", path, (int) getpid());
    SF_INFO info = { .samplerate = 8000, .channels = 1, .format = SF_FORMAT_WAV | SF_FORMAT_PCM_16 };
    SNDFILE *f = err ? NULL : sf_open(tmp, SFM_WRITE, &info);
    if (f) {
        sf_write_short(f, pcm8, d.output_frames_gen);
        sf_close(f);
        rc = rename(tmp, path) == 0 ? 0 : CC_EIO;   /* whole files only: readers never see half */
    } else {
        CC_ERROR("speech not written", "path=%s error=\"%s\"", tmp, err ? src_strerror(err) : sf_strerror(NULL));
        rc = CC_EIO;
    }
    free(in);
    free(out);
    free(pcm8);
    free(pcm.samples);
    return rc;
}
