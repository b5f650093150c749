// libpng / libjpeg-turbo glue for ProbattnImaging. See include/image_shims.h for the contract of each function.
#include "image_shims.h"

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <png.h>
#include <jpeglib.h>
#include <jerror.h>

static void set_message(char *message, const char *text) {
    if (message == NULL) return;
    snprintf(message, PA_IMAGE_MESSAGE_SIZE, "%s", text);
}

void pa_image_free(void *buffer) { free(buffer); }

// MARK: - PNG (libpng's simplified API: it contains libpng's longjmp error handling and returns 0 on failure)

pa_image_status pa_png_decode_rgb(const uint8_t *data, size_t size, uint64_t max_pixels,
                                  uint8_t **pixels, uint32_t *width, uint32_t *height, char *message) {
    *pixels = NULL;
    *width = 0;
    *height = 0;
    png_image image;
    memset(&image, 0, sizeof image);
    image.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_memory(&image, data, size)) {
        set_message(message, image.message);
        png_image_free(&image);
        return PA_IMAGE_CORRUPT;
    }
    *width = image.width;
    *height = image.height;
    uint64_t count = (uint64_t)image.width * (uint64_t)image.height;
    if (max_pixels != 0 && count > max_pixels) {
        png_image_free(&image);
        set_message(message, "image dimensions exceed the pixel limit");
        return PA_IMAGE_TOO_LARGE;
    }
    image.format = PNG_FORMAT_RGB;
    size_t bytes = PNG_IMAGE_SIZE(image);
    // Zeroed so that an alpha channel is composited onto black.
    uint8_t *buffer = calloc(bytes == 0 ? 1 : bytes, 1);
    if (buffer == NULL) {
        png_image_free(&image);
        set_message(message, "out of memory");
        return PA_IMAGE_NO_MEMORY;
    }
    if (!png_image_finish_read(&image, NULL, buffer, 0, NULL)) {
        set_message(message, image.message);
        png_image_free(&image);
        free(buffer);
        return PA_IMAGE_CORRUPT;
    }
    png_image_free(&image);
    *pixels = buffer;
    return PA_IMAGE_OK;
}

pa_image_status pa_png_encode(const uint8_t *pixels, uint32_t width, uint32_t height, int channels,
                              uint8_t **output, size_t *output_size, char *message) {
    *output = NULL;
    *output_size = 0;
    if (width == 0 || height == 0 || (channels != 1 && channels != 3) || pixels == NULL) {
        set_message(message, "PNG encoder: empty image or unsupported channel count");
        return PA_IMAGE_BAD_ARGUMENT;
    }
    png_image image;
    memset(&image, 0, sizeof image);
    image.version = PNG_IMAGE_VERSION;
    image.width = width;
    image.height = height;
    image.format = channels == 1 ? PNG_FORMAT_GRAY : PNG_FORMAT_RGB;
    png_int_32 stride = (png_int_32)width * channels;
    // First pass: ask for the size.
    png_alloc_size_t needed = 0;
    if (!png_image_write_to_memory(&image, NULL, &needed, 0, pixels, stride, NULL)) {
        set_message(message, image.message);
        png_image_free(&image);
        return PA_IMAGE_CORRUPT;
    }
    uint8_t *buffer = malloc(needed == 0 ? 1 : needed);
    if (buffer == NULL) {
        set_message(message, "out of memory");
        return PA_IMAGE_NO_MEMORY;
    }
    png_alloc_size_t written = needed;
    if (!png_image_write_to_memory(&image, buffer, &written, 0, pixels, stride, NULL)) {
        set_message(message, image.message);
        png_image_free(&image);
        free(buffer);
        return PA_IMAGE_CORRUPT;
    }
    *output = buffer;
    *output_size = written;
    return PA_IMAGE_OK;
}

// MARK: - JPEG (an error manager whose error_exit longjmps back into these functions)

typedef struct {
    struct jpeg_error_mgr base;
    jmp_buf jump;
    char *message;
    pa_image_status status;
} pa_jpeg_error;

static void pa_jpeg_error_exit(j_common_ptr cinfo) {
    pa_jpeg_error *error = (pa_jpeg_error *)cinfo->err;
    char text[JMSG_LENGTH_MAX];
    (*cinfo->err->format_message)(cinfo, text);
    set_message(error->message, text);
    int code = error->base.msg_code;
    error->status = (code == JERR_CONVERSION_NOTIMPL || code == JERR_BAD_J_COLORSPACE || code == JERR_NOTIMPL ||
                     code == JERR_BAD_PRECISION)
        ? PA_IMAGE_UNSUPPORTED : PA_IMAGE_CORRUPT;
    longjmp(error->jump, 1);
}

/// Warnings are silent, except "premature end of data": libjpeg would pad a truncated file with grey; we refuse it.
static void pa_jpeg_emit_message(j_common_ptr cinfo, int level) {
    if (level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF) {
        pa_jpeg_error_exit(cinfo);
    }
}

pa_image_status pa_jpeg_decode_rgb(const uint8_t *data, size_t size, uint64_t max_pixels,
                                   uint8_t **pixels, uint32_t *width, uint32_t *height, char *message) {
    *pixels = NULL;
    *width = 0;
    *height = 0;
    struct jpeg_decompress_struct cinfo;
    pa_jpeg_error error;
    memset(&cinfo, 0, sizeof cinfo);
    cinfo.err = jpeg_std_error(&error.base);
    error.base.error_exit = pa_jpeg_error_exit;
    error.base.emit_message = pa_jpeg_emit_message;
    error.message = message;
    error.status = PA_IMAGE_CORRUPT;
    uint8_t *volatile buffer = NULL;
    if (setjmp(error.jump)) {
        jpeg_destroy_decompress(&cinfo);
        free(buffer);
        return error.status;
    }
    jpeg_create_decompress(&cinfo);
    if (size == 0) {
        set_message(message, "empty JPEG data");
        jpeg_destroy_decompress(&cinfo);
        return PA_IMAGE_CORRUPT;
    }
    jpeg_mem_src(&cinfo, data, (unsigned long)size);
    jpeg_read_header(&cinfo, TRUE);
    *width = cinfo.image_width;
    *height = cinfo.image_height;
    uint64_t count = (uint64_t)cinfo.image_width * (uint64_t)cinfo.image_height;
    if (max_pixels != 0 && count > max_pixels) {
        jpeg_destroy_decompress(&cinfo);
        set_message(message, "image dimensions exceed the pixel limit");
        return PA_IMAGE_TOO_LARGE;
    }
    if (cinfo.jpeg_color_space != JCS_GRAYSCALE && cinfo.jpeg_color_space != JCS_YCbCr &&
        cinfo.jpeg_color_space != JCS_RGB) {
        jpeg_destroy_decompress(&cinfo);
        set_message(message, "JPEG colour space is not grey, YCbCr or RGB (CMYK/YCCK are not supported)");
        return PA_IMAGE_UNSUPPORTED;
    }
    cinfo.out_color_space = JCS_RGB;
    jpeg_start_decompress(&cinfo);
    if (cinfo.output_components != 3) {
        jpeg_destroy_decompress(&cinfo);
        set_message(message, "JPEG decoder did not produce 3 components");
        return PA_IMAGE_UNSUPPORTED;
    }
    size_t stride = (size_t)cinfo.output_width * 3;
    buffer = malloc(stride * cinfo.output_height);
    if (buffer == NULL) {
        jpeg_destroy_decompress(&cinfo);
        set_message(message, "out of memory");
        return PA_IMAGE_NO_MEMORY;
    }
    while (cinfo.output_scanline < cinfo.output_height) {
        JSAMPROW row = buffer + (size_t)cinfo.output_scanline * stride;
        jpeg_read_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_decompress(&cinfo);
    *width = cinfo.output_width;
    *height = cinfo.output_height;
    jpeg_destroy_decompress(&cinfo);
    *pixels = buffer;
    return PA_IMAGE_OK;
}

/// A growable in-memory destination that this file owns (so an error path can always free it exactly once).
typedef struct {
    struct jpeg_destination_mgr base;
    uint8_t *buffer;
    size_t capacity;
    int failed;
} pa_jpeg_memory_destination;

static void pa_jpeg_init_destination(j_compress_ptr cinfo) {
    pa_jpeg_memory_destination *dest = (pa_jpeg_memory_destination *)cinfo->dest;
    dest->base.next_output_byte = dest->buffer;
    dest->base.free_in_buffer = dest->capacity;
}

static boolean pa_jpeg_empty_output_buffer(j_compress_ptr cinfo) {
    pa_jpeg_memory_destination *dest = (pa_jpeg_memory_destination *)cinfo->dest;
    size_t grown = dest->capacity * 2;
    uint8_t *bigger = realloc(dest->buffer, grown);
    if (bigger == NULL) {
        dest->failed = 1;
        ERREXIT(cinfo, JERR_OUT_OF_MEMORY);
    }
    dest->base.next_output_byte = bigger + dest->capacity;
    dest->base.free_in_buffer = grown - dest->capacity;
    dest->buffer = bigger;
    dest->capacity = grown;
    return TRUE;
}

static void pa_jpeg_term_destination(j_compress_ptr cinfo) { (void)cinfo; }

pa_image_status pa_jpeg_encode(const uint8_t *pixels, uint32_t width, uint32_t height, int channels, int quality,
                               uint8_t **output, size_t *output_size, char *message) {
    *output = NULL;
    *output_size = 0;
    if (width == 0 || height == 0 || width > 65500 || height > 65500 || (channels != 1 && channels != 3) ||
        pixels == NULL || quality < 1 || quality > 100) {
        set_message(message, "JPEG encoder: bad size (1...65500), channel count (1 or 3) or quality (1...100)");
        return PA_IMAGE_BAD_ARGUMENT;
    }
    pa_jpeg_memory_destination dest;
    memset(&dest, 0, sizeof dest);
    dest.capacity = 65536;
    dest.buffer = malloc(dest.capacity);
    if (dest.buffer == NULL) {
        set_message(message, "out of memory");
        return PA_IMAGE_NO_MEMORY;
    }
    dest.base.init_destination = pa_jpeg_init_destination;
    dest.base.empty_output_buffer = pa_jpeg_empty_output_buffer;
    dest.base.term_destination = pa_jpeg_term_destination;

    struct jpeg_compress_struct cinfo;
    pa_jpeg_error error;
    memset(&cinfo, 0, sizeof cinfo);
    cinfo.err = jpeg_std_error(&error.base);
    error.base.error_exit = pa_jpeg_error_exit;
    error.message = message;
    error.status = PA_IMAGE_CORRUPT;
    if (setjmp(error.jump)) {
        jpeg_destroy_compress(&cinfo);
        free(dest.buffer);
        return dest.failed ? PA_IMAGE_NO_MEMORY : error.status;
    }
    jpeg_create_compress(&cinfo);
    cinfo.dest = &dest.base;
    cinfo.image_width = width;
    cinfo.image_height = height;
    cinfo.input_components = channels;
    cinfo.in_color_space = channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_set_defaults(&cinfo);
    jpeg_set_quality(&cinfo, quality, TRUE);
    jpeg_start_compress(&cinfo, TRUE);
    size_t stride = (size_t)width * channels;
    while (cinfo.next_scanline < cinfo.image_height) {
        JSAMPROW row = (JSAMPROW)(pixels + (size_t)cinfo.next_scanline * stride);
        jpeg_write_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_compress(&cinfo);
    size_t written = dest.capacity - dest.base.free_in_buffer;
    jpeg_destroy_compress(&cinfo);
    *output = dest.buffer;
    *output_size = written;
    return PA_IMAGE_OK;
}
