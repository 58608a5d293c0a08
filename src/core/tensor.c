/* tensor.c — dtype facts, shape printing and scalar conversions for tensor views. */
#include "tensor.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static const struct {
    const char *name;
    size_t size;
} dtype_info[G4_DT_COUNT] = {
    [G4_DT_F32] = {"F32", 4},         [G4_DT_F16] = {"F16", 2},         [G4_DT_BF16] = {"BF16", 2},
    [G4_DT_F64] = {"F64", 8},         [G4_DT_I8] = {"I8", 1},           [G4_DT_U8] = {"U8", 1},
    [G4_DT_I16] = {"I16", 2},         [G4_DT_U16] = {"U16", 2},         [G4_DT_I32] = {"I32", 4},
    [G4_DT_U32] = {"U32", 4},         [G4_DT_I64] = {"I64", 8},         [G4_DT_U64] = {"U64", 8},
    [G4_DT_BOOL] = {"BOOL", 1},       [G4_DT_F8_E4M3] = {"F8_E4M3", 1}, [G4_DT_F8_E5M2] = {"F8_E5M2", 1},
    [G4_DT_Q8] = {"G4_Q8", 0},        [G4_DT_Q4] = {"G4_Q4", 0},        [G4_DT_Q6] = {"G4_Q6", 0},
};

/* Bytes per block of 32 for the block-quantized types (scale + packed values). */
static size_t block_bytes(g4_dtype dt) {
    switch (dt) {
    case G4_DT_Q8: return 36;
    case G4_DT_Q4: return 18;
    case G4_DT_Q6: return 26;
    default: return 0;
    }
}

int g4_dtype_is_quantized(g4_dtype dt) { return block_bytes(dt) != 0; }

size_t g4_row_bytes(g4_dtype dt, int64_t K) {
    if (K < 0) return 0;
    if (g4_dtype_is_quantized(dt)) return K % 32 ? 0 : (size_t)(K / 32) * block_bytes(dt);
    return (size_t)K * g4_dtype_size(dt);
}

size_t g4_dtype_size(g4_dtype dt) {
    if ((int)dt < 0 || dt >= G4_DT_COUNT) return 0;
    return dtype_info[dt].size;
}

const char *g4_dtype_name(g4_dtype dt) {
    if ((int)dt < 0 || dt >= G4_DT_COUNT) return "?";
    return dtype_info[dt].name;
}

/* Returns 0 and sets *out when `name` is a known safetensors dtype spelling, else -1. */
int g4_dtype_from_name(const char *name, g4_dtype *out) {
    for (int i = 0; i < G4_DT_FIRST_BLOCK; i++) { /* gemma4c's block types never appear in safetensors */
        if (strcmp(name, dtype_info[i].name) == 0) {
            *out = (g4_dtype)i;
            return 0;
        }
    }
    return -1;
}

int64_t g4_tensor_numel(const g4_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) {
        if (t->shape[i] == 0) return 0;
        if (t->shape[i] < 0 || n > INT64_MAX / t->shape[i]) return -1; /* readers reject such shapes first */
        n *= t->shape[i];
    }
    return n;
}

const char *g4_shape_str(const g4_tensor *t, char *buf, size_t len) {
    if (!buf || len == 0) return buf;
    size_t pos = 0;
    buf[0] = '\0';
    int w = snprintf(buf, len, "[");
    if (w > 0) pos = (size_t)w;
    for (int i = 0; i < t->ndim && pos < len; i++) {
        w = snprintf(buf + pos, len - pos, i ? ", %lld" : "%lld", (long long)t->shape[i]);
        if (w < 0) break;
        pos += (size_t)w;
    }
    if (pos < len) snprintf(buf + pos, len - pos, "]");
    return buf;
}

float g4_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    uint32_t bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (mant << 13);
    } else if (exp != 0) {
        bits = sign | ((exp + 112u) << 23) | (mant << 13);
    } else if (mant == 0) {
        bits = sign;
    } else {
        /* Subnormal: the value is exactly mant * 2^-24, which float represents. */
        float v = (float)mant * 5.9604644775390625e-08f;
        return sign ? -v : v;
    }
    union { uint32_t u; float f; } v = {bits};
    return v.f;
}

uint16_t g4_f32_to_f16(float f) {
    union { float f; uint32_t u; } v = {f};
    uint32_t sign = (v.u >> 16) & 0x8000u;
    uint32_t absu = v.u & 0x7fffffffu;
    if (absu > 0x7f800000u) return (uint16_t)(sign | 0x7e00u | ((absu >> 13) & 0x3ffu));
    if (absu >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* rounds past 65504: infinity */
    if (absu < 0x38800000u) {
        /* Result is subnormal (or zero) in half: round mant*2^(e) to a multiple of 2^-24, ties to even. */
        if (absu < 0x33000000u) return (uint16_t)sign; /* below half of the smallest subnormal */
        uint32_t e = absu >> 23;
        uint32_t m = (absu & 0x7fffffu) | 0x800000u;
        uint32_t shift = 126u - e; /* 14..24 */
        uint32_t q = m >> shift;
        uint32_t rem = m & ((1u << shift) - 1u);
        uint32_t half = 1u << (shift - 1u);
        if (rem > half || (rem == half && (q & 1u))) q++;
        return (uint16_t)(sign | q);
    }
    uint32_t rounded = absu + 0xfffu + ((absu >> 13) & 1u);
    return (uint16_t)(sign | ((rounded - 0x38000000u) >> 13));
}

/* FP8 formats decoded through their (sign, exponent, mantissa) fields; E4M3 (fn variant) has no infinity. */
static float f8_to_f32(uint8_t b, int mant_bits, int bias, int has_inf) {
    int sign = b >> 7;
    int exp_bits = 7 - mant_bits;
    int e = (b >> mant_bits) & ((1 << exp_bits) - 1);
    int m = b & ((1 << mant_bits) - 1);
    float v;
    if (has_inf && e == (1 << exp_bits) - 1) {
        v = m ? NAN : INFINITY;
    } else if (!has_inf && e == (1 << exp_bits) - 1 && m == (1 << mant_bits) - 1) {
        v = NAN;
    } else if (e == 0) {
        v = ldexpf((float)m, 1 - bias - mant_bits);
    } else {
        v = ldexpf((float)((1 << mant_bits) + m), e - bias - mant_bits);
    }
    return sign ? -v : v;
}

float g4_tensor_get_f32(const g4_tensor *t, int64_t i) {
    if (!t || !t->data || i < 0 || i >= g4_tensor_numel(t)) return NAN;
    size_t es = g4_dtype_size(t->dtype);
    if (es == 0 || (size_t)(i + 1) * es > t->nbytes) return NAN;
    const unsigned char *p = (const unsigned char *)t->data + (size_t)i * es;
    /* memcpy keeps unaligned or oddly placed data well defined. */
    switch (t->dtype) {
    case G4_DT_F32: { float v; memcpy(&v, p, 4); return v; }
    case G4_DT_F16: { uint16_t v; memcpy(&v, p, 2); return g4_f16_to_f32(v); }
    case G4_DT_BF16: { uint16_t v; memcpy(&v, p, 2); return g4_bf16_to_f32(v); }
    case G4_DT_F64: { double v; memcpy(&v, p, 8); return (float)v; }
    case G4_DT_I8: return (float)(int8_t)p[0];
    case G4_DT_U8: return (float)p[0];
    case G4_DT_BOOL: return p[0] ? 1.0f : 0.0f;
    case G4_DT_I16: { int16_t v; memcpy(&v, p, 2); return (float)v; }
    case G4_DT_U16: { uint16_t v; memcpy(&v, p, 2); return (float)v; }
    case G4_DT_I32: { int32_t v; memcpy(&v, p, 4); return (float)v; }
    case G4_DT_U32: { uint32_t v; memcpy(&v, p, 4); return (float)v; }
    case G4_DT_I64: { int64_t v; memcpy(&v, p, 8); return (float)v; }
    case G4_DT_U64: { uint64_t v; memcpy(&v, p, 8); return (float)v; }
    case G4_DT_F8_E4M3: return f8_to_f32(p[0], 3, 7, 0);
    case G4_DT_F8_E5M2: return f8_to_f32(p[0], 2, 15, 1);
    default: return NAN;
    }
}
