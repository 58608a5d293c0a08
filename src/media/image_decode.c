/* image_decode.c — PNG/JPEG/WebP/GIF/BMP to 8-bit RGB, as Pillow's open + exif_transpose + convert("RGB"). */
#include "image.h"

#include <limits.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gif_lib.h>
#include <jpeglib.h>
#include <jerror.h>
#include <png.h>
#include <webp/decode.h>
#include <webp/demux.h>

#include "core/mapfile.h"

/* Why EXIF orientation is applied by default: transformers 5.17 reads every image it is given as a path, URL,
 * base64 string or PIL image (chat messages, pipelines) with image_utils.load_image, which is PIL.Image.open,
 * then ImageOps.exif_transpose, then convert("RGB"). Only a caller that hands the image processor pixels
 * directly skips the transpose (../golden did, on files without EXIF); keep_orientation reproduces that. */

/* ---- small helpers ------------------------------------------------------------------------------------- */

static uint32_t rd32be(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static uint32_t rd32le(const uint8_t *p) {
    return (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}
static uint16_t rd16le(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

/* Library messages go into a one-line error: drop anything that would break the line. */
static void one_line(char *s) {
    for (; *s; s++)
        if (*s == '\n' || *s == '\r') *s = ' ';
}

/* Checked before anything of the image's size is allocated. Writes the reason (without a format prefix) into
 * buf and returns non-zero when the declared size is refused. */
static int pixels_refused(uint64_t w, uint64_t h, uint64_t max_pixels, char *buf, size_t len) {
    if (w == 0 || h == 0) {
        snprintf(buf, len, "image has no pixels (%llux%llu)", (unsigned long long)w, (unsigned long long)h);
        return 1;
    }
    if (w > INT_MAX || h > INT_MAX || w * h > max_pixels) {
        snprintf(buf, len, "image of %llux%llu pixels exceeds the limit of %llu pixels", (unsigned long long)w,
                 (unsigned long long)h, (unsigned long long)max_pixels);
        return 1;
    }
    return 0;
}

static int check_pixels(uint64_t w, uint64_t h, uint64_t max_pixels, const char *fmt, g4_err *err) {
    char why[160];
    if (pixels_refused(w, h, max_pixels, why, sizeof why)) return g4_fail(err, GEMMA4C_ERR_FORMAT, "%s: %s", fmt, why);
    return 0;
}

static uint8_t *alloc_rgb(int w, int h) { return malloc((size_t)w * (size_t)h * 3); }

/* Metadata that can carry an orientation. Pointers are into the input bytes or into `owned`. */
typedef struct img_meta {
    const uint8_t *exif;
    size_t exif_len;
    const uint8_t *xmp;
    size_t xmp_len;
    uint8_t *owned; /* a copy when the data had to be assembled (concatenated JPEG segments, WebP chunks) */
    uint8_t *owned_xmp;
} img_meta;

static void meta_free(img_meta *m) {
    free(m->owned);
    free(m->owned_xmp);
    memset(m, 0, sizeof *m);
}

/* ---- EXIF / XMP orientation ------------------------------------------------------------------------------ */

/* The value Pillow's getexif() reports for tag 0x0112 in IFD0: 1..8, -1 when the tag is there with a value no
 * orientation equals, 0 when there is no such tag. Like Pillow, a malformed entry is skipped and a read past
 * the end stops the directory; unlike Pillow, a malformed header is treated as "no EXIF" instead of raising.
 * A value that compares equal to an integer (a rational 6/1, a float 6.0) counts as that integer. */
static int exif_orientation(const uint8_t *d, size_t n) {
    while (n >= 6 && memcmp(d, "Exif\0\0", 6) == 0) d += 6, n -= 6;
    if (n < 8) return 0;
    int le;
    if (d[0] == 'I' && d[1] == 'I') le = 1;
    else if (d[0] == 'M' && d[1] == 'M') le = 0;
    else return 0;
#define U16(p) (le ? (uint32_t)((p)[0] | (p)[1] << 8) : (uint32_t)((p)[0] << 8 | (p)[1]))
#define U32(p) (le ? rd32le(p) : rd32be(p))
    uint32_t magic = U16(d + 2);
    if (magic != 42) return 0; /* classic TIFF only: BigTIFF EXIF does not occur in image files */
    uint32_t ifd = U32(d + 4);
    if (ifd > n || n - ifd < 2) return 0;
    uint32_t count = U16(d + ifd);
    size_t pos = (size_t)ifd + 2;
    int found = 0;
    for (uint32_t i = 0; i < count; i++, pos += 12) {
        if (pos + 12 > n) break;
        const uint8_t *e = d + pos;
        uint32_t tag = U16(e), type = U16(e + 2), cnt = U32(e + 4);
        static const uint8_t unit[19] = {0, 1, 1, 2, 4, 8, 1, 1, 2, 4, 8, 4, 8, 4, 0, 0, 8, 8, 8};
        if (type >= 19 || unit[type] == 0) continue;
        uint64_t size = (uint64_t)cnt * unit[type];
        const uint8_t *v;
        if (size > 4) {
            uint32_t off = U32(e + 8);
            if (off > n || n - off < size) break; /* Pillow's read past the end ends the directory */
            v = d + off;
        } else {
            v = e + 8;
        }
        if (size == 0 || tag != 0x0112) continue;
        double val;
        switch (type) {
        case 1: val = v[0]; break;
        case 6: val = (int8_t)v[0]; break;
        case 3: val = U16(v); break;
        case 8: val = (int16_t)U16(v); break;
        case 4: case 13: val = U32(v); break;
        case 9: val = (int32_t)U32(v); break;
        case 5: case 10: {
            uint32_t num = U32(v), den = U32(v + 4);
            if (den == 0) { val = -1; break; }
            val = type == 5 ? (double)num / den : (double)(int32_t)num / (int32_t)den;
            break;
        }
        case 11: {
            uint32_t b = U32(v);
            float f;
            memcpy(&f, &b, 4);
            val = f;
            break;
        }
        case 12: {
            uint64_t b = le ? (uint64_t)rd32le(v + 4) << 32 | rd32le(v) : (uint64_t)rd32be(v) << 32 | rd32be(v + 4);
            memcpy(&val, &b, 8);
            break;
        }
        default: val = -1; break; /* ASCII, UNDEFINED, 64-bit: never equal to an orientation */
        }
        found = (val >= 1 && val <= 8 && val == (double)(int)val) ? (int)val : -1;
    }
#undef U16
#undef U32
    return found;
}

/* Pillow falls back to the XMP packet (regex tiff:Orientation(="|>)([0-9])) when EXIF has no orientation. */
static int xmp_orientation(const uint8_t *x, size_t n) {
    static const char key[] = "tiff:Orientation";
    size_t kl = sizeof key - 1;
    for (size_t i = 0; n >= kl + 2 && i <= n - kl - 2; i++) {
        if (memcmp(x + i, key, kl) != 0) continue;
        size_t j = i + kl; /* j + 1 < n here */
        if (x[j] == '=' && j + 2 < n && x[j + 1] == '"') j += 2;
        else if (x[j] == '>') j += 1;
        else continue;
        if (x[j] >= '0' && x[j] <= '9') return x[j] - '0';
    }
    return 0;
}

static int meta_orientation(const img_meta *m) {
    if (m->exif && m->exif_len) {
        int o = exif_orientation(m->exif, m->exif_len);
        if (o != 0) return o > 0 ? o : 0;
    }
    if (m->xmp && m->xmp_len) return xmp_orientation(m->xmp, m->xmp_len);
    return 0;
}

/* Applies PIL's Transpose for EXIF orientations 2..8 (ImageOps.exif_transpose's table). */
static int apply_orientation(g4_image *img, int orientation, g4_err *err) {
    if (orientation < 2 || orientation > 8) return 0;
    int w = img->width, h = img->height;
    int swap = orientation >= 5;
    int ow = swap ? h : w, oh = swap ? w : h;
    uint8_t *dst = alloc_rgb(ow, oh);
    if (!dst) return g4_fail(err, GEMMA4C_ERR_NOMEM, "out of memory rotating a %dx%d image", w, h);
    for (int y = 0; y < oh; y++) {
        for (int x = 0; x < ow; x++) {
            int sx, sy;
            switch (orientation) {
            case 2: sx = w - 1 - x, sy = y; break;                 /* FLIP_LEFT_RIGHT */
            case 3: sx = w - 1 - x, sy = h - 1 - y; break;         /* ROTATE_180 */
            case 4: sx = x, sy = h - 1 - y; break;                 /* FLIP_TOP_BOTTOM */
            case 5: sx = y, sy = x; break;                         /* TRANSPOSE */
            case 6: sx = y, sy = h - 1 - x; break;                 /* ROTATE_270 */
            case 7: sx = w - 1 - y, sy = h - 1 - x; break;         /* TRANSVERSE */
            default: sx = w - 1 - y, sy = x; break;                /* 8: ROTATE_90 */
            }
            memcpy(dst + ((size_t)y * ow + x) * 3, img->rgb + ((size_t)sy * w + sx) * 3, 3);
        }
    }
    free(img->rgb);
    img->rgb = dst;
    img->width = ow;
    img->height = oh;
    return 0;
}

/* ---- PNG (libpng) ----------------------------------------------------------------------------------------- */

typedef struct png_ctx {
    const uint8_t *data;
    size_t size, pos;
    uint64_t max_pixels;
    png_structp png;
    png_infop info;
    uint8_t *row;       /* one decoded row (non-interlaced) */
    uint8_t *native;    /* the whole decoded image (interlaced) */
    png_bytep *rows;
    g4_image img;
    char msg[256];
    int code;
} png_ctx;

static void png_on_error(png_structp png, png_const_charp msg) {
    png_ctx *c = png_get_error_ptr(png);
    if (!c->msg[0]) snprintf(c->msg, sizeof c->msg, "%s", msg);
    png_longjmp(png, 1);
}
static void png_on_warning(png_structp png, png_const_charp msg) { (void)png, (void)msg; }

static void png_read_mem(png_structp png, png_bytep out, size_t n) {
    png_ctx *c = png_get_io_ptr(png);
    if (n > c->size - c->pos) {
        snprintf(c->msg, sizeof c->msg, "file is truncated");
        png_error(png, "file is truncated");
    }
    memcpy(out, c->data + c->pos, n);
    c->pos += n;
}

/* Walks the chunk list for eXIf and an uncompressed XMP iTXt (libpng keeps neither after IDAT). */
static void png_find_meta(const uint8_t *d, size_t n, img_meta *m) {
    size_t pos = 8;
    while (pos + 12 <= n) {
        uint32_t len = rd32be(d + pos);
        const uint8_t *type = d + pos + 4;
        if (len > n - pos - 12) break;
        const uint8_t *body = d + pos + 8;
        if (memcmp(type, "eXIf", 4) == 0 && !m->exif) {
            m->exif = body;
            m->exif_len = len;
        } else if (memcmp(type, "iTXt", 4) == 0 && len > 18 && memcmp(body, "XML:com.adobe.xmp\0", 18) == 0) {
            /* keyword\0, compression flag, method, language\0, translated keyword\0, text */
            size_t p = 18;
            if (p + 2 <= len && body[p] == 0) {
                p += 2;
                const uint8_t *z = memchr(body + p, 0, len - p);
                if (z) {
                    p = (size_t)(z - body) + 1;
                    z = p < len ? memchr(body + p, 0, len - p) : NULL;
                    if (z) {
                        p = (size_t)(z - body) + 1;
                        m->xmp = body + p;
                        m->xmp_len = len - p;
                    }
                }
            }
        } else if (memcmp(type, "IEND", 4) == 0) {
            break;
        }
        pos += (size_t)len + 12;
    }
}

/* Native samples of one row to RGB, with Pillow's mode conversions (see PngImagePlugin._MODES and
 * Convert.c): 16-bit colour keeps the high byte, 16-bit grey clips to 255, low-depth grey is scaled. */
static void png_row_to_rgb(const uint8_t *in, int w, int color_type, int depth, const uint8_t pal[256][3],
                           uint8_t *out) {
    for (int x = 0; x < w; x++, out += 3) {
        uint8_t r, g, b;
        switch (color_type) {
        case PNG_COLOR_TYPE_GRAY:
            if (depth == 16) {
                r = in[2 * x] == 0 ? in[2 * x + 1] : 255;
            } else {
                uint8_t v = in[x];
                r = depth == 1 ? (v ? 255 : 0) : depth == 2 ? (uint8_t)(v * 85) : depth == 4 ? (uint8_t)(v * 17) : v;
            }
            g = b = r;
            break;
        case PNG_COLOR_TYPE_PALETTE:
            r = pal[in[x]][0], g = pal[in[x]][1], b = pal[in[x]][2];
            break;
        case PNG_COLOR_TYPE_GRAY_ALPHA:
            r = g = b = depth == 16 ? in[4 * x] : in[2 * x];
            break;
        case PNG_COLOR_TYPE_RGB:
            if (depth == 16) r = in[6 * x], g = in[6 * x + 2], b = in[6 * x + 4];
            else r = in[3 * x], g = in[3 * x + 1], b = in[3 * x + 2];
            break;
        default: /* RGBA */
            if (depth == 16) r = in[8 * x], g = in[8 * x + 2], b = in[8 * x + 4];
            else r = in[4 * x], g = in[4 * x + 1], b = in[4 * x + 2];
            break;
        }
        out[0] = r, out[1] = g, out[2] = b;
    }
}

static int png_decode_inner(png_ctx *c) {
    if (setjmp(png_jmpbuf(c->png))) return -1;
    png_set_read_fn(c->png, c, png_read_mem);
    png_set_user_limits(c->png, 0x7fffffff, 0x7fffffff); /* our own pixel cap applies instead */
    /* A chunk may declare up to 2 GB: libpng would allocate and clear that much for a text chunk. Nothing but
     * the pixels is wanted from libpng (metadata is read from the bytes directly), so ancillary chunks are
     * skipped unread and any allocation for a chunk is bounded. */
    png_set_chunk_malloc_max(c->png, 8u << 20);
    png_set_chunk_cache_max(c->png, 1000);
#ifdef PNG_HANDLE_AS_UNKNOWN_SUPPORTED
    static const png_byte skip[] = "iTXt\0tEXt\0zTXt\0iCCP\0eXIf\0sPLT\0hIST\0tIME\0pCAL\0sCAL\0oFFs\0pHYs\0sBIT\0"
                                   "gAMA\0cHRM\0sRGB\0bKGD\0tRNS";
    png_set_keep_unknown_chunks(c->png, PNG_HANDLE_CHUNK_NEVER, NULL, 0);
    png_set_keep_unknown_chunks(c->png, PNG_HANDLE_CHUNK_NEVER, skip, (int)(sizeof skip / 5));
#endif
#ifdef PNG_CHECK_FOR_INVALID_INDEX_SUPPORTED
    png_set_check_for_invalid_index(c->png, 0); /* Pillow maps indices past the palette to black */
#endif
    png_read_info(c->png, c->info);
    png_uint_32 w, h;
    int depth, color_type, interlace;
    png_get_IHDR(c->png, c->info, &w, &h, &depth, &color_type, &interlace, NULL, NULL);
    if (pixels_refused(w, h, c->max_pixels, c->msg, sizeof c->msg)) {
        c->code = GEMMA4C_ERR_FORMAT;
        return -1;
    }
    uint8_t pal[256][3];
    memset(pal, 0, sizeof pal);
    if (color_type == PNG_COLOR_TYPE_PALETTE) {
        png_colorp plte = NULL;
        int n = 0;
        if (png_get_PLTE(c->png, c->info, &plte, &n) && plte)
            for (int i = 0; i < n && i < 256; i++)
                pal[i][0] = plte[i].red, pal[i][1] = plte[i].green, pal[i][2] = plte[i].blue;
    }
    if (depth < 8) png_set_packing(c->png); /* one sample per byte, unscaled */
    int passes = png_set_interlace_handling(c->png);
    png_read_update_info(c->png, c->info);
    size_t rowbytes = png_get_rowbytes(c->png, c->info);
    c->img.rgb = alloc_rgb((int)w, (int)h);
    if (!c->img.rgb) {
        snprintf(c->msg, sizeof c->msg, "out of memory for %ux%u pixels", (unsigned)w, (unsigned)h);
        c->code = GEMMA4C_ERR_NOMEM;
        return -1;
    }
    c->img.width = (int)w;
    c->img.height = (int)h;
    if (passes <= 1) {
        c->row = malloc(rowbytes ? rowbytes : 1);
        if (!c->row) {
            snprintf(c->msg, sizeof c->msg, "out of memory");
            c->code = GEMMA4C_ERR_NOMEM;
            return -1;
        }
        for (png_uint_32 y = 0; y < h; y++) {
            png_read_row(c->png, c->row, NULL);
            png_row_to_rgb(c->row, (int)w, color_type, depth, (const uint8_t(*)[3])pal, c->img.rgb + (size_t)y * w * 3);
        }
    } else {
        if (rowbytes && (size_t)h > SIZE_MAX / rowbytes) {
            snprintf(c->msg, sizeof c->msg, "image too large");
            c->code = GEMMA4C_ERR_FORMAT;
            return -1;
        }
        c->native = malloc(rowbytes * h + 1);
        c->rows = malloc(h * sizeof *c->rows);
        if (!c->native || !c->rows) {
            snprintf(c->msg, sizeof c->msg, "out of memory for an interlaced %ux%u image", (unsigned)w, (unsigned)h);
            c->code = GEMMA4C_ERR_NOMEM;
            return -1;
        }
        for (png_uint_32 y = 0; y < h; y++) c->rows[y] = c->native + (size_t)y * rowbytes;
        png_read_image(c->png, c->rows);
        for (png_uint_32 y = 0; y < h; y++)
            png_row_to_rgb(c->rows[y], (int)w, color_type, depth, (const uint8_t(*)[3])pal,
                           c->img.rgb + (size_t)y * w * 3);
    }
    return 0;
}

static int decode_png(const uint8_t *d, size_t n, uint64_t max_pixels, g4_image *out, img_meta *meta, g4_err *err) {
    png_ctx c;
    memset(&c, 0, sizeof c);
    c.data = d;
    c.size = n;
    c.max_pixels = max_pixels;
    c.code = GEMMA4C_ERR_FORMAT;
    c.png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &c, png_on_error, png_on_warning);
    if (c.png) c.info = png_create_info_struct(c.png);
    if (!c.png || !c.info) {
        png_destroy_read_struct(c.png ? &c.png : NULL, NULL, NULL);
        return g4_fail(err, GEMMA4C_ERR_NOMEM, "PNG: out of memory");
    }
    int rc = png_decode_inner(&c);
    png_destroy_read_struct(&c.png, &c.info, NULL);
    free(c.row);
    free(c.native);
    free(c.rows);
    if (rc != 0) {
        free(c.img.rgb);
        one_line(c.msg);
        return g4_fail(err, c.code, "PNG: %s", c.msg[0] ? c.msg : "decoding failed");
    }
    png_find_meta(d, n, meta);
    *out = c.img;
    return 0;
}

/* ---- JPEG (libjpeg-turbo, as Pillow drives it) ------------------------------------------------------------ */

typedef struct jpeg_ctx {
    struct jpeg_decompress_struct cinfo;
    struct jpeg_error_mgr jerr;
    struct jpeg_source_mgr src;
    struct jpeg_progress_mgr progress;
    jmp_buf jb;
    uint64_t max_pixels;
    uint8_t *row;
    g4_image img;
    char msg[JMSG_LENGTH_MAX + 64];
    int code;
} jpeg_ctx;

#define JPEG_MAX_SCANS 1000 /* progressive files with more scans than this are attacks, not photos */

static void jpeg_on_error(j_common_ptr cinfo) {
    jpeg_ctx *c = (jpeg_ctx *)cinfo->client_data;
    if (!c->msg[0]) (*cinfo->err->format_message)(cinfo, c->msg);
    longjmp(c->jb, 1);
}
static void jpeg_on_message(j_common_ptr cinfo, int level) { (void)cinfo, (void)level; } /* Pillow ignores warnings */

static void src_init(j_decompress_ptr cinfo) { (void)cinfo; }
static void src_term(j_decompress_ptr cinfo) { (void)cinfo; }
/* The whole file is in the buffer already: wanting more means it is truncated, which Pillow refuses. */
static boolean src_fill(j_decompress_ptr cinfo) {
    jpeg_ctx *c = (jpeg_ctx *)cinfo->client_data;
    snprintf(c->msg, sizeof c->msg, "file is truncated");
    longjmp(c->jb, 1);
}
static void src_skip(j_decompress_ptr cinfo, long n) {
    struct jpeg_source_mgr *s = cinfo->src;
    if (n <= 0) return;
    if ((size_t)n > s->bytes_in_buffer) {
        s->next_input_byte += s->bytes_in_buffer;
        s->bytes_in_buffer = 0;
        src_fill(cinfo);
    }
    s->next_input_byte += n;
    s->bytes_in_buffer -= (size_t)n;
}

static void jpeg_on_progress(j_common_ptr cinfo) {
    j_decompress_ptr d = (j_decompress_ptr)cinfo;
    if (d->input_scan_number > JPEG_MAX_SCANS) {
        jpeg_ctx *c = (jpeg_ctx *)cinfo->client_data;
        snprintf(c->msg, sizeof c->msg, "more than %d progressive scans", JPEG_MAX_SCANS);
        longjmp(c->jb, 1);
    }
}

/* Collects the first Exif APP1 (later ones appended, as Pillow does) and the last XMP APP1. */
static int jpeg_meta(j_decompress_ptr cinfo, img_meta *m) {
    size_t total = 0;
    for (jpeg_saved_marker_ptr p = cinfo->marker_list; p; p = p->next)
        if (p->marker == JPEG_APP0 + 1 && p->data_length >= 6 && memcmp(p->data, "Exif\0\0", 6) == 0)
            total += p->data_length;
    if (total) {
        m->owned = malloc(total);
        if (!m->owned) return -1;
        size_t n = 0;
        for (jpeg_saved_marker_ptr p = cinfo->marker_list; p; p = p->next) {
            if (!(p->marker == JPEG_APP0 + 1 && p->data_length >= 6 && memcmp(p->data, "Exif\0\0", 6) == 0)) continue;
            size_t skip = n ? 6 : 0;
            memcpy(m->owned + n, p->data + skip, p->data_length - skip);
            n += p->data_length - skip;
        }
        m->exif = m->owned;
        m->exif_len = n;
    }
    static const char xmp_sig[] = "http://ns.adobe.com/xap/1.0/";
    for (jpeg_saved_marker_ptr p = cinfo->marker_list; p; p = p->next) {
        if (p->marker != JPEG_APP0 + 1 || p->data_length < sizeof xmp_sig) continue;
        if (memcmp(p->data, xmp_sig, sizeof xmp_sig) != 0) continue; /* includes the NUL */
        free(m->owned_xmp);
        m->owned_xmp = malloc(p->data_length - sizeof xmp_sig + 1);
        if (!m->owned_xmp) return -1;
        memcpy(m->owned_xmp, p->data + sizeof xmp_sig, p->data_length - sizeof xmp_sig);
        m->xmp = m->owned_xmp;
        m->xmp_len = p->data_length - sizeof xmp_sig;
    }
    return 0;
}

static int jpeg_decode_inner(jpeg_ctx *c, const uint8_t *d, size_t n, img_meta *meta) {
    if (setjmp(c->jb)) return -1;
    jpeg_create_decompress(&c->cinfo);
    c->cinfo.src = &c->src;
    c->src.init_source = src_init;
    c->src.fill_input_buffer = src_fill;
    c->src.skip_input_data = src_skip;
    c->src.resync_to_restart = jpeg_resync_to_restart;
    c->src.term_source = src_term;
    c->src.next_input_byte = d;
    c->src.bytes_in_buffer = n;
    c->progress.progress_monitor = jpeg_on_progress;
    c->cinfo.progress = &c->progress;
    jpeg_save_markers(&c->cinfo, JPEG_APP0 + 1, 0xFFFF);
    jpeg_read_header(&c->cinfo, TRUE);
    if (pixels_refused(c->cinfo.image_width, c->cinfo.image_height, c->max_pixels, c->msg, sizeof c->msg)) {
        c->code = GEMMA4C_ERR_FORMAT;
        return -1;
    }
    /* Progressive files keep every coefficient in memory: bound that by the pixel cap too (8 bytes a pixel
     * covers three full-resolution components of 16-bit coefficients plus padding). */
    c->cinfo.mem->max_memory_to_use = (long)(c->max_pixels < (uint64_t)LONG_MAX / 8 ? c->max_pixels * 8 : LONG_MAX);
    int comps = c->cinfo.num_components;
    if (comps == 1) c->cinfo.out_color_space = JCS_GRAYSCALE;
    else if (comps == 3) c->cinfo.out_color_space = JCS_RGB;
    else if (comps == 4) c->cinfo.out_color_space = JCS_CMYK; /* YCCK is converted to CMYK by libjpeg */
    else {
        snprintf(c->msg, sizeof c->msg, "cannot handle %d-component images", comps);
        c->code = GEMMA4C_ERR_UNSUPPORTED;
        return -1;
    }
    if (jpeg_meta(&c->cinfo, meta) != 0) {
        snprintf(c->msg, sizeof c->msg, "out of memory");
        c->code = GEMMA4C_ERR_NOMEM;
        return -1;
    }
    jpeg_start_decompress(&c->cinfo);
    int w = (int)c->cinfo.output_width, h = (int)c->cinfo.output_height, oc = c->cinfo.output_components;
    c->img.rgb = alloc_rgb(w, h);
    c->row = malloc((size_t)w * (size_t)oc);
    if (!c->img.rgb || !c->row) {
        snprintf(c->msg, sizeof c->msg, "out of memory for %dx%d pixels", w, h);
        c->code = GEMMA4C_ERR_NOMEM;
        return -1;
    }
    c->img.width = w;
    c->img.height = h;
    while (c->cinfo.output_scanline < c->cinfo.output_height) {
        int y = (int)c->cinfo.output_scanline;
        JSAMPROW rp = c->row;
        if (jpeg_read_scanlines(&c->cinfo, &rp, 1) != 1) {
            snprintf(c->msg, sizeof c->msg, "file is truncated");
            return -1;
        }
        uint8_t *o = c->img.rgb + (size_t)y * w * 3;
        if (oc == 3) {
            memcpy(o, c->row, (size_t)w * 3);
        } else if (oc == 1) {
            for (int x = 0; x < w; x++) o[3 * x] = o[3 * x + 1] = o[3 * x + 2] = c->row[x];
        } else {
            /* Pillow reads 4-component JPEGs as Adobe-inverted CMYK ("CMYK;I"), then cmyk2rgb. */
            for (int x = 0; x < w; x++) {
                int k = 255 - c->row[4 * x + 3];
                int nk = 255 - k;
                for (int ch = 0; ch < 3; ch++) {
                    int cc = 255 - c->row[4 * x + ch];
                    int t = cc * nk + 128;
                    int v = nk - (((t >> 8) + t) >> 8);
                    o[3 * x + ch] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
                }
            }
        }
    }
    jpeg_finish_decompress(&c->cinfo);
    return 0;
}

static int decode_jpeg(const uint8_t *d, size_t n, uint64_t max_pixels, g4_image *out, img_meta *meta, g4_err *err) {
    jpeg_ctx *c = calloc(1, sizeof *c);
    if (!c) return g4_fail(err, GEMMA4C_ERR_NOMEM, "JPEG: out of memory");
    c->max_pixels = max_pixels;
    c->code = GEMMA4C_ERR_FORMAT;
    c->cinfo.err = jpeg_std_error(&c->jerr);
    c->jerr.error_exit = jpeg_on_error;
    c->jerr.emit_message = jpeg_on_message;
    c->cinfo.client_data = c;
    int rc = jpeg_decode_inner(c, d, n, meta);
    jpeg_destroy_decompress(&c->cinfo);
    free(c->row);
    if (rc != 0) {
        free(c->img.rgb);
        one_line(c->msg);
        rc = g4_fail(err, c->code, "JPEG: %s", c->msg[0] ? c->msg : "decoding failed");
        free(c);
        return rc;
    }
    *out = c->img;
    free(c);
    return 0;
}

/* ---- WebP (libwebp's animation decoder, which is what Pillow uses for every WebP) ------------------------ */

static int decode_webp(const uint8_t *d, size_t n, uint64_t max_pixels, g4_image *out, img_meta *meta, g4_err *err) {
    WebPBitstreamFeatures feat;
    if (WebPGetFeatures(d, n, &feat) != VP8_STATUS_OK)
        return g4_fail(err, GEMMA4C_ERR_FORMAT, "WebP: not a valid WebP file");
    int rc = check_pixels((uint64_t)(feat.width > 0 ? feat.width : 0), (uint64_t)(feat.height > 0 ? feat.height : 0),
                          max_pixels, "WebP", err);
    if (rc) return rc;
    WebPAnimDecoderOptions opt;
    if (!WebPAnimDecoderOptionsInit(&opt)) return g4_fail(err, GEMMA4C_ERR_INTERNAL, "WebP: library version mismatch");
    opt.color_mode = MODE_RGBA; /* straight (not premultiplied) alpha, which is then dropped */
    opt.use_threads = 0;
    WebPData wd = {d, n};
    WebPAnimDecoder *dec = WebPAnimDecoderNew(&wd, &opt);
    if (!dec) return g4_fail(err, GEMMA4C_ERR_FORMAT, "WebP: could not parse the file (corrupt or truncated)");
    WebPAnimInfo info;
    if (!WebPAnimDecoderGetInfo(dec, &info)) {
        WebPAnimDecoderDelete(dec);
        return g4_fail(err, GEMMA4C_ERR_FORMAT, "WebP: could not read the canvas");
    }
    if ((rc = check_pixels(info.canvas_width, info.canvas_height, max_pixels, "WebP", err)) != 0) {
        WebPAnimDecoderDelete(dec);
        return rc;
    }
    uint8_t *frame = NULL;
    int ts = 0;
    if (!WebPAnimDecoderGetNext(dec, &frame, &ts) || !frame) {
        WebPAnimDecoderDelete(dec);
        return g4_fail(err, GEMMA4C_ERR_FORMAT, "WebP: could not decode the first frame (corrupt or truncated)");
    }
    int w = (int)info.canvas_width, h = (int)info.canvas_height;
    uint8_t *rgb = alloc_rgb(w, h);
    if (!rgb) {
        WebPAnimDecoderDelete(dec);
        return g4_fail(err, GEMMA4C_ERR_NOMEM, "WebP: out of memory for %dx%d pixels", w, h);
    }
    for (size_t i = 0, np = (size_t)w * h; i < np; i++) memcpy(rgb + 3 * i, frame + 4 * i, 3);
    const WebPDemuxer *dmx = WebPAnimDecoderGetDemuxer(dec);
    WebPChunkIterator it;
    static const char *names[2] = {"EXIF", "XMP "};
    for (int k = 0; k < 2; k++) {
        if (!WebPDemuxGetChunk(dmx, names[k], 1, &it)) continue;
        uint8_t *copy = malloc(it.chunk.size ? it.chunk.size : 1);
        if (copy) {
            memcpy(copy, it.chunk.bytes, it.chunk.size);
            if (k == 0) meta->owned = copy, meta->exif = copy, meta->exif_len = it.chunk.size;
            else meta->owned_xmp = copy, meta->xmp = copy, meta->xmp_len = it.chunk.size;
        }
        WebPDemuxReleaseChunkIterator(&it);
    }
    WebPAnimDecoderDelete(dec);
    *out = (g4_image){w, h, rgb};
    return 0;
}

/* ---- GIF (giflib), first frame as Pillow composes it ------------------------------------------------------ */

typedef struct gif_src {
    const uint8_t *data;
    size_t size, pos;
} gif_src;

static int gif_read(GifFileType *g, GifByteType *buf, int n) {
    gif_src *s = g->UserData;
    if (n <= 0) return 0;
    size_t k = (size_t)n;
    if (k > s->size - s->pos) k = s->size - s->pos;
    memcpy(buf, s->data + s->pos, k);
    s->pos += k;
    return (int)k;
}

/* Pillow keeps a GIF in mode L (value = index) when its palette is the identity grey ramp. */
static int gif_palette_needed(const ColorMapObject *cm) {
    for (int i = 0; i < cm->ColorCount; i++) {
        const GifColorType *c = &cm->Colors[i];
        if (!(c->Red == i && c->Green == i && c->Blue == i)) return 1;
    }
    return 0;
}

static int decode_gif(const uint8_t *d, size_t n, uint64_t max_pixels, g4_image *out, g4_err *err) {
    gif_src src = {d, n, 0};
    int gerr = 0;
    GifFileType *g = DGifOpen(&src, gif_read, &gerr);
    if (!g)
        return g4_fail(err, GEMMA4C_ERR_FORMAT, "GIF: %s", GifErrorString(gerr) ? GifErrorString(gerr) : "cannot open");
    int transparency = -1;
    uint8_t *idx = NULL, *line = NULL, *rgb = NULL;
    int rc = 0, cw = 0, ch = 0;
    for (;;) {
        GifRecordType rt;
        if (DGifGetRecordType(g, &rt) == GIF_ERROR) {
            rc = g4_fail(err, GEMMA4C_ERR_FORMAT, "GIF: %s", GifErrorString(g->Error));
            goto done;
        }
        if (rt == TERMINATE_RECORD_TYPE) {
            rc = g4_fail(err, GEMMA4C_ERR_FORMAT, "GIF: no image in the file");
            goto done;
        }
        if (rt == EXTENSION_RECORD_TYPE) {
            int code = 0;
            GifByteType *ext = NULL;
            if (DGifGetExtension(g, &code, &ext) == GIF_ERROR) {
                rc = g4_fail(err, GEMMA4C_ERR_FORMAT, "GIF: %s", GifErrorString(g->Error));
                goto done;
            }
            /* A later control block without the transparency flag leaves an earlier index in place (Pillow). */
            if (code == GRAPHICS_EXT_FUNC_CODE && ext && ext[0] >= 4 && (ext[1] & 1)) transparency = ext[4];
            while (ext) {
                if (DGifGetExtensionNext(g, &ext) == GIF_ERROR) {
                    rc = g4_fail(err, GEMMA4C_ERR_FORMAT, "GIF: %s", GifErrorString(g->Error));
                    goto done;
                }
            }
            continue;
        }
        if (rt != IMAGE_DESC_RECORD_TYPE) continue;
        if (DGifGetImageDesc(g) == GIF_ERROR) {
            rc = g4_fail(err, GEMMA4C_ERR_FORMAT, "GIF: %s", GifErrorString(g->Error));
            goto done;
        }
        break;
    }
    {
        GifImageDesc *im = &g->Image;
        int x0 = im->Left, y0 = im->Top, fw = im->Width, fh = im->Height;
        /* Pillow grows the canvas to hold a frame that overhangs the logical screen. */
        cw = g->SWidth > x0 + fw ? g->SWidth : x0 + fw;
        ch = g->SHeight > y0 + fh ? g->SHeight : y0 + fh;
        if ((rc = check_pixels((uint64_t)(cw > 0 ? cw : 0), (uint64_t)(ch > 0 ? ch : 0), max_pixels, "GIF", err)) != 0)
            goto done;
        idx = malloc((size_t)cw * ch);
        line = malloc(fw > 0 ? (size_t)fw : 1);
        if (!idx || !line) {
            rc = g4_fail(err, GEMMA4C_ERR_NOMEM, "GIF: out of memory for %dx%d pixels", cw, ch);
            goto done;
        }
        /* Outside the first frame: the transparent index if there is one, else 0. */
        memset(idx, transparency >= 0 ? transparency : 0, (size_t)cw * ch);
        static const int start[4] = {0, 4, 2, 1}, step[4] = {8, 8, 4, 2};
        int npass = im->Interlace ? 4 : 1;
        for (int p = 0; p < npass; p++) {
            int y = im->Interlace ? start[p] : 0, dy = im->Interlace ? step[p] : 1;
            for (; y < fh; y += dy) {
                if (fw > 0 && DGifGetLine(g, line, fw) == GIF_ERROR) {
                    rc = g4_fail(err, GEMMA4C_ERR_FORMAT, "GIF: %s", GifErrorString(g->Error));
                    goto done;
                }
                memcpy(idx + (size_t)(y0 + y) * cw + x0, line, (size_t)fw);
            }
        }
        const ColorMapObject *cm = im->ColorMap ? im->ColorMap : g->SColorMap;
        uint8_t pal[256][3];
        memset(pal, 0, sizeof pal);
        int grey = !cm || !gif_palette_needed(cm);
        if (!grey)
            for (int i = 0; i < cm->ColorCount && i < 256; i++)
                pal[i][0] = cm->Colors[i].Red, pal[i][1] = cm->Colors[i].Green, pal[i][2] = cm->Colors[i].Blue;
        rgb = alloc_rgb(cw, ch);
        if (!rgb) {
            rc = g4_fail(err, GEMMA4C_ERR_NOMEM, "GIF: out of memory for %dx%d pixels", cw, ch);
            goto done;
        }
        for (size_t i = 0, np = (size_t)cw * ch; i < np; i++) {
            uint8_t v = idx[i];
            if (grey) rgb[3 * i] = rgb[3 * i + 1] = rgb[3 * i + 2] = v;
            else memcpy(rgb + 3 * i, pal[v], 3);
        }
    }
done:
    DGifCloseFile(g, &gerr);
    free(idx);
    free(line);
    if (rc != 0) {
        free(rgb);
        return rc;
    }
    *out = (g4_image){cw, ch, rgb};
    return 0;
}

/* ---- BMP (own parser following Pillow's BmpImagePlugin) ------------------------------------------------- */

static int decode_bmp(const uint8_t *d, size_t n, uint64_t max_pixels, g4_image *out, g4_err *err) {
    if (n < 18) return g4_fail(err, GEMMA4C_ERR_FORMAT, "BMP: file is truncated");
    uint32_t offset = rd32le(d + 10);
    uint32_t hsize = rd32le(d + 14);
    int64_t width, height;
    int bits, compression = 0, top_down = 0, pal_pad;
    uint32_t colors = 0, masks[4] = {0, 0, 0, 0};
    size_t pos;
    if (hsize == 12) {
        if (n < 26) return g4_fail(err, GEMMA4C_ERR_FORMAT, "BMP: file is truncated");
        width = rd16le(d + 18);
        height = rd16le(d + 20);
        bits = rd16le(d + 24);
        pal_pad = 3;
        pos = 26;
    } else if (hsize == 40 || hsize == 52 || hsize == 56 || hsize == 64 || hsize == 108 || hsize == 124) {
        if (n < 14 + (size_t)hsize) return g4_fail(err, GEMMA4C_ERR_FORMAT, "BMP: file is truncated");
        const uint8_t *h = d + 18;
        width = (int32_t)rd32le(h);
        uint32_t hraw = rd32le(h + 4);
        top_down = h[7] == 0xFF;
        height = top_down ? (int64_t)((uint64_t)1 << 32) - hraw : hraw;
        bits = rd16le(h + 10);
        compression = (int)rd32le(h + 12);
        colors = rd32le(h + 28);
        pal_pad = 4;
        pos = 14 + (size_t)hsize;
        if (compression == 3) {
            if (hsize - 4 >= 48) {
                int nm = hsize - 4 >= 52 ? 4 : 3;
                for (int i = 0; i < nm; i++) masks[i] = rd32le(h + 36 + 4 * i);
            } else {
                if (n < pos + 12) return g4_fail(err, GEMMA4C_ERR_FORMAT, "BMP: file is truncated");
                for (int i = 0; i < 3; i++) masks[i] = rd32le(d + pos + 4 * i);
                pos += 12;
            }
        }
    } else {
        return g4_fail(err, GEMMA4C_ERR_UNSUPPORTED, "BMP: unsupported header type (%u)", hsize);
    }
    if (width <= 0 || height <= 0 || width > INT_MAX || height > INT_MAX)
        return g4_fail(err, GEMMA4C_ERR_FORMAT, "BMP: invalid size %lldx%lld", (long long)width, (long long)height);
    int rc = check_pixels((uint64_t)width, (uint64_t)height, max_pixels, "BMP", err);
    if (rc) return rc;
    if (!colors && bits < 32) colors = 1u << bits;
    if (offset == 14 + hsize && bits <= 8) offset += (uint32_t)pal_pad * colors;
    /* A zero data offset means "right after the headers" (and the palette, if any). */
    if (offset == 0) offset = (uint32_t)(pos + (bits <= 8 ? (size_t)pal_pad * colors : 0));
    if (bits != 1 && bits != 4 && bits != 8 && bits != 16 && bits != 24 && bits != 32)
        return g4_fail(err, GEMMA4C_ERR_UNSUPPORTED, "BMP: unsupported pixel depth (%d)", bits);
    /* How a pixel becomes RGB: 0 palette/grey, 1 BGR;15, 2 BGR;16, 3 BGR, 4 BGRX-like 32-bit with byte offsets */
    int kind, roff = 2, goff = 1, boff = 0;
    if (compression == 3) {
        if (bits == 32) {
            static const uint32_t m32[8][4] = {
                {0xFF0000, 0xFF00, 0xFF, 0x0},         {0xFF000000, 0xFF0000, 0xFF00, 0x0},
                {0xFF000000, 0xFF00, 0xFF, 0x0},       {0xFF000000, 0xFF0000, 0xFF00, 0xFF},
                {0xFF, 0xFF00, 0xFF0000, 0xFF000000},  {0xFF0000, 0xFF00, 0xFF, 0xFF000000},
                {0xFF000000, 0xFF00, 0xFF, 0xFF0000},  {0x0, 0x0, 0x0, 0x0}};
            /* byte offsets (little-endian) of R, G, B for each layout; the all-zero masks read as BGRA */
            static const int off[8][3] = {{2, 1, 0}, {3, 2, 1}, {3, 1, 0}, {3, 2, 1},
                                          {0, 1, 2}, {2, 1, 0}, {3, 1, 0}, {2, 1, 0}};
            int found = -1;
            for (int i = 0; i < 8; i++)
                if (memcmp(masks, m32[i], sizeof masks) == 0) found = i;
            if (found < 0) return g4_fail(err, GEMMA4C_ERR_UNSUPPORTED, "BMP: unsupported bitfields layout");
            kind = 4, roff = off[found][0], goff = off[found][1], boff = off[found][2];
        } else if (bits == 24 && masks[0] == 0xFF0000 && masks[1] == 0xFF00 && masks[2] == 0xFF) {
            kind = 3;
        } else if (bits == 16 && masks[0] == 0xF800 && masks[1] == 0x7E0 && masks[2] == 0x1F) {
            kind = 2;
        } else if (bits == 16 && masks[0] == 0x7C00 && masks[1] == 0x3E0 && masks[2] == 0x1F) {
            kind = 1;
        } else {
            return g4_fail(err, GEMMA4C_ERR_UNSUPPORTED, "BMP: unsupported bitfields layout");
        }
    } else if (compression == 0) {
        kind = bits <= 8 ? 0 : bits == 16 ? 1 : bits == 24 ? 3 : 4;
    } else if (compression == 1 || compression == 2) {
        return g4_fail(err, GEMMA4C_ERR_UNSUPPORTED, "BMP: RLE compression is not supported");
    } else {
        return g4_fail(err, GEMMA4C_ERR_UNSUPPORTED, "BMP: unsupported compression (%d)", compression);
    }
    uint8_t pal[256][3];
    memset(pal, 0, sizeof pal);
    int grey = 0;
    if (kind == 0) {
        if (colors == 0 || colors > 65536)
            return g4_fail(err, GEMMA4C_ERR_FORMAT, "BMP: unsupported palette size (%u)", colors);
        size_t pbytes = (size_t)pal_pad * colors;
        if (pos > n || n - pos < pbytes) return g4_fail(err, GEMMA4C_ERR_FORMAT, "BMP: file is truncated");
        grey = 1;
        for (uint32_t i = 0; i < colors; i++) {
            const uint8_t *e = d + pos + (size_t)i * pal_pad; /* B, G, R */
            uint32_t want = colors == 2 ? (i ? 255 : 0) : i;
            if (!(e[0] == want && e[1] == want && e[2] == want)) grey = 0;
        }
        if (!grey) {
            if (colors > 256)
                return g4_fail(err, GEMMA4C_ERR_FORMAT, "BMP: palette of %u colours is too large", colors);
            for (uint32_t i = 0; i < colors; i++) {
                const uint8_t *e = d + pos + (size_t)i * pal_pad;
                pal[i][0] = e[2], pal[i][1] = e[1], pal[i][2] = e[0];
            }
        }
    }
    int w = (int)width, h = (int)height;
    size_t stride = (((size_t)w * (size_t)bits + 31) >> 3) & ~(size_t)3;
    if (offset > n || (n - offset) / stride < (size_t)h)
        return g4_fail(err, GEMMA4C_ERR_FORMAT, "BMP: file is truncated");
    uint8_t *rgb = alloc_rgb(w, h);
    if (!rgb) return g4_fail(err, GEMMA4C_ERR_NOMEM, "BMP: out of memory for %dx%d pixels", w, h);
    for (int y = 0; y < h; y++) {
        const uint8_t *s = d + offset + (size_t)(top_down ? y : h - 1 - y) * stride;
        uint8_t *o = rgb + (size_t)y * w * 3;
        for (int x = 0; x < w; x++, o += 3) {
            if (kind == 0) {
                unsigned v = bits == 8   ? s[x]
                             : bits == 4 ? (s[x >> 1] >> (x & 1 ? 0 : 4)) & 15
                                         : (s[x >> 3] >> (7 - (x & 7))) & 1;
                if (grey) o[0] = o[1] = o[2] = (uint8_t)(bits == 1 && colors == 2 ? (v ? 255 : 0) : v);
                else memcpy(o, pal[v], 3);
            } else if (kind == 1 || kind == 2) {
                unsigned p = rd16le(s + 2 * x);
                o[2] = (uint8_t)((p & 31) * 255 / 31);
                if (kind == 1) {
                    o[1] = (uint8_t)(((p >> 5) & 31) * 255 / 31);
                    o[0] = (uint8_t)(((p >> 10) & 31) * 255 / 31);
                } else {
                    o[1] = (uint8_t)(((p >> 5) & 63) * 255 / 63);
                    o[0] = (uint8_t)(((p >> 11) & 31) * 255 / 31);
                }
            } else if (kind == 3) {
                o[0] = s[3 * x + 2], o[1] = s[3 * x + 1], o[2] = s[3 * x];
            } else {
                o[0] = s[4 * x + roff], o[1] = s[4 * x + goff], o[2] = s[4 * x + boff];
            }
        }
    }
    *out = (g4_image){w, h, rgb};
    return 0;
}

/* ---- entry points ------------------------------------------------------------------------------------------ */

g4_image_format g4_image_sniff(const void *data, size_t size) {
    const uint8_t *d = data;
    if (!d) return G4_IMG_UNKNOWN;
    if (size >= 8 && memcmp(d, "\x89PNG\r\n\x1a\n", 8) == 0) return G4_IMG_PNG;
    if (size >= 3 && d[0] == 0xFF && d[1] == 0xD8 && d[2] == 0xFF) return G4_IMG_JPEG;
    if (size >= 12 && memcmp(d, "RIFF", 4) == 0 && memcmp(d + 8, "WEBP", 4) == 0) return G4_IMG_WEBP;
    if (size >= 6 && (memcmp(d, "GIF87a", 6) == 0 || memcmp(d, "GIF89a", 6) == 0)) return G4_IMG_GIF;
    if (size >= 2 && d[0] == 'B' && d[1] == 'M') return G4_IMG_BMP;
    return G4_IMG_UNKNOWN;
}

const char *g4_image_format_name(g4_image_format f) {
    switch (f) {
    case G4_IMG_PNG: return "PNG";
    case G4_IMG_JPEG: return "JPEG";
    case G4_IMG_WEBP: return "WebP";
    case G4_IMG_GIF: return "GIF";
    case G4_IMG_BMP: return "BMP";
    default: return "unknown";
    }
}

int g4_image_decode(const void *data, size_t size, const g4_image_decode_opts *opts, g4_image *out, g4_err *err) {
    memset(out, 0, sizeof *out);
    if (!data || size == 0) return g4_fail(err, GEMMA4C_ERR_FORMAT, "image data is empty");
    uint64_t max_pixels = opts && opts->max_pixels ? opts->max_pixels : G4_IMAGE_DEFAULT_MAX_PIXELS;
    img_meta meta = {0};
    g4_image img = {0};
    int rc;
    const uint8_t *d = data;
    switch (g4_image_sniff(d, size)) {
    case G4_IMG_PNG: rc = decode_png(d, size, max_pixels, &img, &meta, err); break;
    case G4_IMG_JPEG: rc = decode_jpeg(d, size, max_pixels, &img, &meta, err); break;
    case G4_IMG_WEBP: rc = decode_webp(d, size, max_pixels, &img, &meta, err); break;
    case G4_IMG_GIF: rc = decode_gif(d, size, max_pixels, &img, err); break;
    case G4_IMG_BMP: rc = decode_bmp(d, size, max_pixels, &img, err); break;
    default:
        return g4_fail(err, GEMMA4C_ERR_FORMAT, "not an image in a supported format (PNG, JPEG, WebP, GIF, BMP)");
    }
    if (rc == 0 && !(opts && opts->keep_orientation)) rc = apply_orientation(&img, meta_orientation(&meta), err);
    meta_free(&meta);
    if (rc != 0) {
        g4_image_free(&img);
        return rc;
    }
    *out = img;
    return 0;
}

int g4_image_load(const char *path, const g4_image_decode_opts *opts, g4_image *out, g4_err *err) {
    memset(out, 0, sizeof *out);
    g4_mapfile m;
    int rc = g4_mapfile_open(&m, path, err);
    if (rc != 0) return rc;
    rc = g4_image_decode(m.data, m.size, opts, out, err);
    g4_mapfile_close(&m);
    if (rc != 0) g4_err_prefix(err, "%s", path);
    return rc;
}

void g4_image_free(g4_image *img) {
    if (!img) return;
    free(img->rgb);
    memset(img, 0, sizeof *img);
}
