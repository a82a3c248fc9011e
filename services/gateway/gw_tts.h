/* gw_tts: text to speech with espeak-ng, rendered once per text and voice
 * into an 8 kHz WAV file of the cache folder.
 *
 * Rendering takes tens of milliseconds to seconds: call it from a worker
 * thread (libuv's pool), never the media thread. espeak-ng is one engine per
 * process: calls are serialised. */
#ifndef GW_TTS_H
#define GW_TTS_H

#include <stddef.h>

/* Whether language ("en", "zh", ...) has a voice. */
int gw_tts_supported(const char *language);

/* The cache file name (no folder) for text in language ("en", "zh"). */
void gw_tts_name(const char *text, const char *language, char *name, size_t cap);

/* Makes dir/name (gw_tts_name) unless it exists. Returns 0, CC_EINVAL for
 * an unknown language or empty text, CC_EIO when rendering or writing failed
 * (logged). */
int gw_tts_render(const char *dir, const char *text, const char *language);

#endif
