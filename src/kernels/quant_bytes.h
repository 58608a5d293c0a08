/* quant_bytes.h — reads of the packed block fields (scales, high bits) at any alignment, for the SIMD kernels. */
#ifndef G4_QUANT_BYTES_H
#define G4_QUANT_BYTES_H

#include <stdint.h>
#include <string.h>

#include "kernels/quant.h"

/* g4_qtype_block_bytes for a known format, inline: the kernels' format is a constant in each instance, so this
 * folds away where a call would sit in the loop. */
static inline size_t g4_block_size(int qt) {
    return qt == G4_QT_Q4 ? sizeof(g4_block_q4) : qt == G4_QT_Q6 ? sizeof(g4_block_q6) : sizeof(g4_block_q8);
}

static inline uint16_t g4_read16(const void *p) {
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}
static inline uint32_t g4_read32(const void *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}
static inline uint64_t g4_read64(const void *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}
static inline float g4_readf(const void *p) {
    float v;
    memcpy(&v, p, 4);
    return v;
}

#endif
