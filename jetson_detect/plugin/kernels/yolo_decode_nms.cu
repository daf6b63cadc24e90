// YoloDecodeNMS device kernels: YOLOv5 head decode, candidate compaction, exact top-K, class-aware greedy NMS.
//
// Device-only on purpose: the same text is compiled by NVRTC (CI, every Jetson arch), by CuPy's RawModule (the
// GPU harness) and by nvcc 10.2 on the Nano (included from yolo_decode_nms_launch.cu). It may include nothing but
// cuda_fp16.h and must stay within CUDA 10.2 (no CUB, no newer intrinsics).
//
// Results equal jetson_detect/math (decode_heads + non_max_suppression with max_nms = pre_nms_top_k): float ops
// use the explicitly rounded intrinsics so that no multiply-add is fused where NumPy rounds twice, and every
// ordering is by (score descending, candidate index ascending), which is NumPy's stable argsort.
//
// Pipeline, per image b (all buffers live in the caller's workspace):
//   ydn_reset_counts                 counts[b] = 0
//   ydn_decode_f32 / ydn_decode_f16  one launch per level; candidates get a 64-bit key (score bits << 32 |
//                                    ~position) appended at atomicAdd(counts[b]) and their box/class stored at
//                                    their position, so slot order is irrelevant once keys are sorted
//   ydn_select_sort                  one block: radix-select the K-th largest key when there are more than K,
//                                    bitonic-sort the kept keys, gather sorted boxes/scores/classes
//   ydn_nms_mask                     64x64 tiles of the upper triangle: bit j of row i = "i suppresses j"
//   ydn_nms_scan                     one warp: greedy scan over the bitmask, writes the fixed-K outputs

#include <cuda_fp16.h>

typedef unsigned long long ydn_u64;

#define YDN_MAX_ANCHORS 4
#define YDN_SELECT_THREADS 1024
#define YDN_MASK_THREADS 64

__device__ __forceinline__ float ydn_load(const float* p) { return *p; }
__device__ __forceinline__ float ydn_load(const __half* p) { return __half2float(*p); }

__device__ __forceinline__ float ydn_sigmoid(float x)
{
    return __fdiv_rn(1.0f, __fadd_rn(1.0f, expf(-x)));
}

extern "C" __global__ void ydn_reset_counts(int* counts, int batch)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < batch)
        counts[i] = 0;
}

#define YDN_SMALL_NC 16

// One thread per (anchor, row, column) of one level; blockIdx.y is the image; blockDim.x a multiple of 32.
// With more than YDN_SMALL_NC classes, the class scan of each candidate is shared by its warp (lane c reads classes
// c, c+32, ...), so a candidate costs a few memory round trips instead of one per class.
template <typename T>
__device__ void ydn_decode_level(const T* head, int height, int width, int na, int nc, float stride,
    const float* anchor_wh, float conf_thres, int level_offset, int num_positions, ydn_u64* cand_keys,
    float* cand_boxes, int* cand_classes, int* counts)
{
    const unsigned full = 0xFFFFFFFFu;
    const int hw = height * width;
    const int idx = blockIdx.x * blockDim.x + threadIdx.x;
    const bool inside = idx < na * hw;
    const int lane = threadIdx.x & 31;
    const int b = blockIdx.y;
    const int a = inside ? idx / hw : 0;
    const int cell = inside ? idx - a * hw : 0;
    const int gy = cell / width;
    const int gx = cell - gy * width;
    const int no = 5 + nc;
    const long long offset = ((long long)b * na * no + (long long)a * no) * hw + cell;
    const T* p = head + offset;

    const float obj = inside ? ydn_sigmoid(ydn_load(p + 4 * (size_t)hw)) : 0.0f;
    const bool candidate = inside && obj > conf_thres;
    int best = 0;
    float best_score = 0.0f;
    if (nc <= YDN_SMALL_NC)
    {
        // Few classes (fire/smoke: 2): each candidate scans its own classes; sharing the scan across the warp would
        // serialise the warp's candidates for a handful of loads each. nc is uniform, so the branch does not diverge.
        if (candidate)
        {
            best = nc;
            best_score = -1.0f;
            for (int c = 0; c < nc; ++c)
            {
                const float s = __fmul_rn(ydn_sigmoid(ydn_load(p + (size_t)(5 + c) * hw)), obj);
                if (s > best_score)
                {
                    best_score = s;
                    best = c;
                }
            }
        }
    }
    else
    {
        unsigned pending = __ballot_sync(full, candidate);
        while (pending)
        {
            const int src = __ffs((int)pending) - 1;
            pending &= pending - 1u;
            const float src_obj = __shfl_sync(full, obj, src);
            const T* q = head + __shfl_sync(full, offset, src);
            // NumPy: argmax over obj * cls, first index wins ties; lanes below hold no class yet (-1, index nc).
            float s_best = -1.0f;
            int c_best = nc;
            for (int c = lane; c < nc; c += 32)
            {
                const float s = __fmul_rn(ydn_sigmoid(ydn_load(q + (size_t)(5 + c) * hw)), src_obj);
                if (s > s_best)
                {
                    s_best = s;
                    c_best = c;
                }
            }
            for (int step = 16; step > 0; step >>= 1)
            {
                const float s_other = __shfl_xor_sync(full, s_best, step);
                const int c_other = __shfl_xor_sync(full, c_best, step);
                if (s_other > s_best || (s_other == s_best && c_other < c_best))
                {
                    s_best = s_other;
                    c_best = c_other;
                }
            }
            if (lane == src)
            {
                best = c_best;
                best_score = s_best;
            }
        }
    }
    if (!candidate || !(best_score > conf_thres))
        return;

    const float sx = ydn_sigmoid(ydn_load(p));
    const float sy = ydn_sigmoid(ydn_load(p + (size_t)hw));
    const float sw = __fmul_rn(ydn_sigmoid(ydn_load(p + 2 * (size_t)hw)), 2.0f);
    const float sh = __fmul_rn(ydn_sigmoid(ydn_load(p + 3 * (size_t)hw)), 2.0f);
    const float cx = __fmul_rn(__fadd_rn(__fsub_rn(__fmul_rn(sx, 2.0f), 0.5f), (float)gx), stride);
    const float cy = __fmul_rn(__fadd_rn(__fsub_rn(__fmul_rn(sy, 2.0f), 0.5f), (float)gy), stride);
    const float w = __fmul_rn(__fmul_rn(sw, sw), anchor_wh[2 * a]);
    const float h = __fmul_rn(__fmul_rn(sh, sh), anchor_wh[2 * a + 1]);
    const float half_w = __fmul_rn(w, 0.5f);
    const float half_h = __fmul_rn(h, 0.5f);

    const int pos = level_offset + idx;
    const size_t base = (size_t)b * num_positions;
    const int slot = atomicAdd(&counts[b], 1);
    cand_keys[base + slot] = ((ydn_u64)__float_as_uint(best_score) << 32) | (ydn_u64)(0xFFFFFFFFu - (unsigned)pos);
    float* box = cand_boxes + (base + pos) * 4;
    box[0] = __fsub_rn(cx, half_w);
    box[1] = __fsub_rn(cy, half_h);
    box[2] = __fadd_rn(cx, half_w);
    box[3] = __fadd_rn(cy, half_h);
    cand_classes[base + pos] = best;
}

// Anchors travel as scalars (up to YDN_MAX_ANCHORS pairs) so that no device constant buffer is needed.
#define YDN_DECODE_ENTRY(NAME, T)                                                                                  \
    extern "C" __global__ void NAME(const T* head, int height, int width, int na, int nc, float stride, float aw0, \
        float ah0, float aw1, float ah1, float aw2, float ah2, float aw3, float ah3, float conf_thres,              \
        int level_offset, int num_positions, ydn_u64* cand_keys, float* cand_boxes, int* cand_classes,            \
        int* counts)                                                                                               \
    {                                                                                                              \
        const float anchor_wh[2 * YDN_MAX_ANCHORS] = {aw0, ah0, aw1, ah1, aw2, ah2, aw3, ah3};                     \
        ydn_decode_level<T>(head, height, width, na, nc, stride, anchor_wh, conf_thres, level_offset,             \
            num_positions, cand_keys, cand_boxes, cand_classes, counts);                                           \
    }

YDN_DECODE_ENTRY(ydn_decode_f32, float)
YDN_DECODE_ENTRY(ydn_decode_f16, __half)

// One block of YDN_SELECT_THREADS per image. sort_buf_global (pow2(K) keys per image) is used when the caller
// cannot give pow2(K) * 8 bytes of dynamic shared memory (use_global != 0).
extern "C" __global__ void __launch_bounds__(YDN_SELECT_THREADS) ydn_select_sort(const ydn_u64* cand_keys, const int* counts, const float* cand_boxes,
    const int* cand_classes, int num_positions, int top_k, int top_k_pow2, ydn_u64* sort_buf_global,
    int use_global, float* sorted_boxes, float* sorted_scores, int* sorted_classes, int* num_sorted)
{
    extern __shared__ ydn_u64 sort_buf_shared[];
    __shared__ unsigned int hist[256];
    __shared__ ydn_u64 s_prefix;
    __shared__ ydn_u64 s_mask;
    __shared__ int s_remaining;
    __shared__ int s_done;
    __shared__ int s_fill;

    const int b = blockIdx.x;
    const int tid = threadIdx.x;
    const int count = counts[b];
    const int m = count < top_k ? count : top_k;
    const ydn_u64* keys = cand_keys + (size_t)b * num_positions;
    ydn_u64* buf = use_global ? sort_buf_global + (size_t)b * top_k_pow2 : sort_buf_shared;

    if (count <= top_k)
    {
        for (int i = tid; i < count; i += blockDim.x)
            buf[i] = keys[i];
    }
    else
    {
        // Keys are unique (they hold the position), so the K-th largest key T is unique and the K kept keys are
        // exactly those >= T. Find T one byte at a time, most significant first.
        if (tid == 0)
        {
            s_prefix = 0;
            s_mask = 0;
            s_remaining = top_k;
            s_done = 0;
            s_fill = 0;
        }
        __syncthreads();
        for (int shift = 56; shift >= 0; shift -= 8)
        {
            for (int i = tid; i < 256; i += blockDim.x)
                hist[i] = 0;
            __syncthreads();
            const ydn_u64 prefix = s_prefix;
            const ydn_u64 mask = s_mask;
            for (int i = tid; i < count; i += blockDim.x)
            {
                const ydn_u64 k = keys[i];
                if ((k & mask) == prefix)
                    atomicAdd(&hist[(unsigned)(k >> shift) & 255u], 1u);
            }
            __syncthreads();
            if (tid == 0)
            {
                int above = 0;
                int digit = 255;
                for (; digit > 0; --digit)
                {
                    if (above + (int)hist[digit] >= s_remaining)
                        break;
                    above += (int)hist[digit];
                }
                s_remaining -= above;
                s_prefix = prefix | ((ydn_u64)digit << shift);
                s_mask = mask | ((ydn_u64)255u << shift);
                if ((int)hist[digit] == s_remaining)
                    s_done = 1;
            }
            __syncthreads();
            if (s_done)
                break;
        }
        const ydn_u64 threshold = s_prefix;
        for (int i = tid; i < count; i += blockDim.x)
        {
            const ydn_u64 k = keys[i];
            if (k >= threshold)
                buf[atomicAdd(&s_fill, 1)] = k;
        }
    }

    int padded = 1;
    while (padded < m)
        padded <<= 1;
    if (m == 0)
        padded = 0;
    for (int i = m + tid; i < padded; i += blockDim.x)
        buf[i] = 0;
    __syncthreads();

    // Bitonic sort, descending.
    for (int size = 2; size <= padded; size <<= 1)
    {
        for (int stride = size >> 1; stride > 0; stride >>= 1)
        {
            for (int i = tid; i < padded; i += blockDim.x)
            {
                const int j = i ^ stride;
                if (j > i)
                {
                    const ydn_u64 a = buf[i];
                    const ydn_u64 c = buf[j];
                    const bool descending = (i & size) == 0;
                    if (descending ? (a < c) : (a > c))
                    {
                        buf[i] = c;
                        buf[j] = a;
                    }
                }
            }
            __syncthreads();
        }
    }

    const size_t out = (size_t)b * top_k;
    for (int s = tid; s < m; s += blockDim.x)
    {
        const ydn_u64 k = buf[s];
        const unsigned pos = 0xFFFFFFFFu - (unsigned)(k & 0xFFFFFFFFull);
        const size_t src = (size_t)b * num_positions + pos;
        sorted_scores[out + s] = __uint_as_float((unsigned)(k >> 32));
        sorted_classes[out + s] = cand_classes[src];
        for (int q = 0; q < 4; ++q)
            sorted_boxes[(out + s) * 4 + q] = cand_boxes[src * 4 + q];
    }
    if (tid == 0)
        num_sorted[b] = m;
}

// IoU exactly as jetson_detect.math.nms.box_iou_one_to_many (same operation order, no fused multiply-add).
__device__ __forceinline__ float ydn_iou(const float* a, const float* b)
{
    const float ix1 = fmaxf(a[0], b[0]);
    const float iy1 = fmaxf(a[1], b[1]);
    const float ix2 = fminf(a[2], b[2]);
    const float iy2 = fminf(a[3], b[3]);
    const float inter = __fmul_rn(fmaxf(__fsub_rn(ix2, ix1), 0.0f), fmaxf(__fsub_rn(iy2, iy1), 0.0f));
    const float area_a = __fmul_rn(__fsub_rn(a[2], a[0]), __fsub_rn(a[3], a[1]));
    const float area_b = __fmul_rn(__fsub_rn(b[2], b[0]), __fsub_rn(b[3], b[1]));
    return __fdiv_rn(inter, fmaxf(__fsub_rn(__fadd_rn(area_a, area_b), inter), 1e-12f));
}

// grid (any, batch), YDN_MASK_THREADS threads. mask row i, word w: bit k set when candidate i suppresses
// candidate 64*w + k (k > i, same class unless agnostic, IoU > thr). Only words w >= i / 64 are written.
extern "C" __global__ void ydn_nms_mask(const float* sorted_boxes, const int* sorted_classes,
    const int* num_sorted, int top_k, int words, float iou_thres, int class_agnostic, ydn_u64* mask)
{
    __shared__ float col_boxes[YDN_MASK_THREADS * 4];
    __shared__ int col_classes[YDN_MASK_THREADS];

    const int b = blockIdx.y;
    const int tid = threadIdx.x;
    const int m = num_sorted[b];
    const int tiles = (m + YDN_MASK_THREADS - 1) / YDN_MASK_THREADS;
    const float* boxes = sorted_boxes + (size_t)b * top_k * 4;
    const int* classes = sorted_classes + (size_t)b * top_k;

    for (int t = blockIdx.x; t < tiles * tiles; t += gridDim.x)
    {
        const int row_tile = t / tiles;
        const int col_tile = t - row_tile * tiles;
        if (col_tile < row_tile)
            continue;
        const int j0 = col_tile * YDN_MASK_THREADS;
        const int jn = min(YDN_MASK_THREADS, m - j0);
        if (tid < jn)
        {
            for (int q = 0; q < 4; ++q)
                col_boxes[tid * 4 + q] = boxes[(size_t)(j0 + tid) * 4 + q];
            col_classes[tid] = classes[j0 + tid];
        }
        __syncthreads();
        const int i = row_tile * YDN_MASK_THREADS + tid;
        if (i < m)
        {
            float box_i[4];
            for (int q = 0; q < 4; ++q)
                box_i[q] = boxes[(size_t)i * 4 + q];
            const int cls_i = classes[i];
            ydn_u64 bits = 0;
            for (int k = (row_tile == col_tile ? tid + 1 : 0); k < jn; ++k)
            {
                if ((class_agnostic || col_classes[k] == cls_i) && ydn_iou(box_i, &col_boxes[k * 4]) > iou_thres)
                    bits |= 1ull << k;
            }
            mask[((size_t)b * top_k + i) * words + col_tile] = bits;
        }
        __syncthreads();
    }
}

// One warp per image (grid batch, 32 threads, dynamic shared memory words * 8 bytes). Candidates are taken in
// chunks of 64: the chunk's own diagonal mask words sit in registers and the survivors are resolved serially
// with shuffles (one step per kept box), then the kept rows are ORed into the removed bits of the later chunks
// with independent loads.
extern "C" __global__ void ydn_nms_scan(const ydn_u64* mask, const int* num_sorted, int top_k, int words,
    const float* sorted_boxes, const float* sorted_scores, const int* sorted_classes, int max_det,
    int* out_num, float* out_boxes, float* out_scores, int* out_classes)
{
    extern __shared__ ydn_u64 removed[];
    const unsigned full = 0xFFFFFFFFu;
    const int b = blockIdx.x;
    const int lane = threadIdx.x;
    const int m = num_sorted[b];
    const int chunks = (m + 63) / 64;
    const ydn_u64* rows = mask + (size_t)b * top_k * words;
    const size_t in_base = (size_t)b * top_k;
    const size_t out_base = (size_t)b * max_det;

    for (int w = lane; w < chunks; w += 32)
        removed[w] = 0;
    __syncwarp();

    int kept = 0;
    ydn_u64 diag_lo = lane < m ? rows[(size_t)lane * words] : 0;
    ydn_u64 diag_hi = lane + 32 < m ? rows[(size_t)(lane + 32) * words] : 0;
    for (int c = 0; c < chunks && kept < max_det; ++c)
    {
        const int i0 = c * 64;
        const int n = min(64, m - i0);
        // Prefetch the next chunk's diagonal words; their latency hides behind this chunk's serial scan.
        const int i1 = i0 + 64;
        const ydn_u64 next_lo = i1 + lane < m ? rows[(size_t)(i1 + lane) * words + c + 1] : 0;
        const ydn_u64 next_hi = i1 + lane + 32 < m ? rows[(size_t)(i1 + lane + 32) * words + c + 1] : 0;
        const ydn_u64 valid = n == 64 ? ~0ull : ((1ull << n) - 1ull);
        ydn_u64 gone = removed[c];
        ydn_u64 keep_bits = 0;
        int kept_here = 0;
        // Visit only the survivors, lowest index (= highest score) first; a kept row only clears later bits.
        ydn_u64 alive = valid & ~gone;
        while (alive && kept + kept_here < max_det)
        {
            const int k = __ffsll((long long)alive) - 1;
            const ydn_u64 row_word = __shfl_sync(full, k < 32 ? diag_lo : diag_hi, k & 31);
            keep_bits |= 1ull << k;
            ++kept_here;
            gone |= row_word;
            const ydn_u64 above = k == 63 ? 0ull : ~((2ull << k) - 1ull);
            alive = valid & ~gone & above;
        }
        diag_lo = next_lo;
        diag_hi = next_hi;

        for (int k = lane; k < 64; k += 32)
        {
            if ((keep_bits >> k) & 1ull)
            {
                const ydn_u64 below = k ? (keep_bits & ((1ull << k) - 1ull)) : 0ull;
                const size_t dst = out_base + kept + __popcll(below);
                const size_t src = in_base + i0 + k;
                for (int q = 0; q < 4; ++q)
                    out_boxes[dst * 4 + q] = sorted_boxes[src * 4 + q];
                out_scores[dst] = sorted_scores[src];
                out_classes[dst] = sorted_classes[src];
            }
        }
        kept += kept_here;

        for (int w = c + 1 + lane; w < chunks; w += 32)
        {
            ydn_u64 acc = 0;
            ydn_u64 pending = keep_bits;
            while (pending)
            {
                // Issue up to 8 independent loads before using any: one memory round trip instead of 8.
                ydn_u64 words_in_flight[8];
#pragma unroll
                for (int u = 0; u < 8; ++u)
                {
                    words_in_flight[u] = 0;
                    if (pending)
                    {
                        const int k = __ffsll((long long)pending) - 1;
                        pending &= pending - 1ull;
                        words_in_flight[u] = rows[(size_t)(i0 + k) * words + w];
                    }
                }
#pragma unroll
                for (int u = 0; u < 8; ++u)
                    acc |= words_in_flight[u];
            }
            removed[w] |= acc;
        }
        __syncwarp();
    }

    for (int s = kept + lane; s < max_det; s += 32)
    {
        const size_t dst = out_base + s;
        for (int q = 0; q < 4; ++q)
            out_boxes[dst * 4 + q] = 0.0f;
        out_scores[dst] = 0.0f;
        out_classes[dst] = 0;
    }
    if (lane == 0)
        out_num[b] = kept;
}
