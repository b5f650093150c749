// C helpers around libpng and libjpeg-turbo for ProbattnImaging.
//
// Why C: both libraries report fatal errors by longjmp (libjpeg's default error_exit even calls exit()), and a longjmp
// must never cross Swift frames. Every function here keeps setjmp/longjmp (or libpng's simplified API, which does the
// same internally) inside C and reports failures through its return value, so a corrupt file can never take the
// process down.
#ifndef PROBATTN_IMAGE_SHIMS_H
#define PROBATTN_IMAGE_SHIMS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Result codes of every function below.
typedef enum {
    PA_IMAGE_OK = 0,
    /// The data is not a valid image of the format (corrupt, truncated, bad header).
    PA_IMAGE_CORRUPT = 1,
    /// The header's dimensions exceed `max_pixels` (nothing was allocated for the pixels).
    PA_IMAGE_TOO_LARGE = 2,
    /// A valid file this decoder does not handle (for example a CMYK JPEG).
    PA_IMAGE_UNSUPPORTED = 3,
    /// malloc failed.
    PA_IMAGE_NO_MEMORY = 4,
    /// The caller passed bad arguments (encoders: zero size, bad channel count or quality).
    PA_IMAGE_BAD_ARGUMENT = 5
} pa_image_status;

/// The size of the message buffers the functions fill on failure.
#define PA_IMAGE_MESSAGE_SIZE 200

/// Decodes a PNG held in memory into 8-bit RGB (grey, palette, 16-bit and alpha inputs are converted; alpha is
/// composited onto black). `max_pixels` of 0 means no limit. On success `*pixels` is a malloc'd buffer of
/// width*height*3 bytes that the caller releases with `pa_image_free`. On PA_IMAGE_TOO_LARGE, `*width` and `*height`
/// hold the header's dimensions. On failure `message` holds a NUL-terminated explanation.
pa_image_status pa_png_decode_rgb(const uint8_t *data, size_t size, uint64_t max_pixels,
                                  uint8_t **pixels, uint32_t *width, uint32_t *height, char *message);

/// Decodes a baseline or progressive JPEG (grey or YCbCr) held in memory into 8-bit RGB, with libjpeg's default
/// (accurate integer) DCT and fancy upsampling. A file that ends early is an error, not a grey-padded image.
/// Same conventions as `pa_png_decode_rgb`.
pa_image_status pa_jpeg_decode_rgb(const uint8_t *data, size_t size, uint64_t max_pixels,
                                   uint8_t **pixels, uint32_t *width, uint32_t *height, char *message);

/// Encodes 8-bit pixels (`channels` = 1 for grey, 3 for RGB; rows packed without padding) as PNG.
/// On success `*output` is a malloc'd buffer of `*output_size` bytes, released with `pa_image_free`.
pa_image_status pa_png_encode(const uint8_t *pixels, uint32_t width, uint32_t height, int channels,
                              uint8_t **output, size_t *output_size, char *message);

/// Encodes 8-bit pixels (`channels` = 1 or 3) as a baseline JPEG of the given quality (1...100).
pa_image_status pa_jpeg_encode(const uint8_t *pixels, uint32_t width, uint32_t height, int channels, int quality,
                               uint8_t **output, size_t *output_size, char *message);

/// Releases a buffer returned by any function above.
void pa_image_free(void *buffer);

#ifdef __cplusplus
}
#endif

#endif
