// Launchers for kernels/yolo_decode_nms.cu; the workspace layout here is mirrored by
// jetson_detect/plugin/workspace.py (checked against ydnWorkspaceSize by scripts/check_plugin_kernels.py).
#include "yolo_decode_nms_launch.h"

#include "kernels/yolo_decode_nms.cu"

#define YDN_EXPORT __attribute__((visibility("default")))

namespace
{

const size_t kAlign = 256;
const int kDecodeThreads = 256;
const size_t kMaxSharedSortBytes = 32768;

size_t alignUp(size_t n)
{
    return (n + kAlign - 1) / kAlign * kAlign;
}

int nextPow2(int n)
{
    int p = 1;
    while (p < n)
        p <<= 1;
    return p;
}

struct WorkspaceLayout
{
    size_t counts, num_sorted, cand_keys, cand_boxes, cand_classes, sort_buf, sorted_boxes, sorted_scores,
        sorted_classes, mask, total;
};

WorkspaceLayout layoutFor(int batch, int num_positions, int top_k)
{
    const size_t b = static_cast<size_t>(batch);
    const size_t n = static_cast<size_t>(num_positions);
    const size_t k = static_cast<size_t>(top_k);
    const size_t words = (k + 63) / 64;
    WorkspaceLayout l;
    size_t at = 0;
    l.counts = at;
    at += alignUp(b * sizeof(int));
    l.num_sorted = at;
    at += alignUp(b * sizeof(int));
    l.cand_keys = at;
    at += alignUp(b * n * sizeof(ydn_u64));
    l.cand_boxes = at;
    at += alignUp(b * n * 4 * sizeof(float));
    l.cand_classes = at;
    at += alignUp(b * n * sizeof(int));
    l.sort_buf = at;
    at += alignUp(b * static_cast<size_t>(nextPow2(top_k)) * sizeof(ydn_u64));
    l.sorted_boxes = at;
    at += alignUp(b * k * 4 * sizeof(float));
    l.sorted_scores = at;
    at += alignUp(b * k * sizeof(float));
    l.sorted_classes = at;
    at += alignUp(b * k * sizeof(int));
    l.mask = at;
    at += alignUp(b * k * words * sizeof(ydn_u64));
    l.total = at;
    return l;
}

} // namespace

extern "C" YDN_EXPORT size_t ydnWorkspaceSize(int batch, int num_positions, int pre_nms_top_k)
{
    return layoutFor(batch, num_positions, pre_nms_top_k).total;
}

extern "C" YDN_EXPORT int ydnEnqueue(const YdnParams* p, int batch, const int* heights, const int* widths,
    const void* const* heads, int heads_are_half, int* out_num, float* out_boxes, float* out_scores,
    int* out_classes, void* workspace, cudaStream_t stream)
{
    int num_positions = 0;
    for (int l = 0; l < p->num_levels; ++l)
        num_positions += p->num_anchors * heights[l] * widths[l];
    const int top_k = p->pre_nms_top_k;
    const WorkspaceLayout lay = layoutFor(batch, num_positions, top_k);
    char* ws = static_cast<char*>(workspace);
    int* counts = reinterpret_cast<int*>(ws + lay.counts);
    int* num_sorted = reinterpret_cast<int*>(ws + lay.num_sorted);
    ydn_u64* cand_keys = reinterpret_cast<ydn_u64*>(ws + lay.cand_keys);
    float* cand_boxes = reinterpret_cast<float*>(ws + lay.cand_boxes);
    int* cand_classes = reinterpret_cast<int*>(ws + lay.cand_classes);
    ydn_u64* sort_buf = reinterpret_cast<ydn_u64*>(ws + lay.sort_buf);
    float* sorted_boxes = reinterpret_cast<float*>(ws + lay.sorted_boxes);
    float* sorted_scores = reinterpret_cast<float*>(ws + lay.sorted_scores);
    int* sorted_classes = reinterpret_cast<int*>(ws + lay.sorted_classes);
    ydn_u64* mask = reinterpret_cast<ydn_u64*>(ws + lay.mask);

    ydn_reset_counts<<<(batch + 255) / 256, 256, 0, stream>>>(counts, batch);

    int level_offset = 0;
    for (int l = 0; l < p->num_levels; ++l)
    {
        const int n = p->num_anchors * heights[l] * widths[l];
        const dim3 grid((n + kDecodeThreads - 1) / kDecodeThreads, batch);
        float a[2 * YDN_MAX_ANCHORS_PER_LEVEL] = {0};
        for (int i = 0; i < p->num_anchors; ++i)
        {
            a[2 * i] = p->anchors[l][i][0];
            a[2 * i + 1] = p->anchors[l][i][1];
        }
        if (heads_are_half)
            ydn_decode_f16<<<grid, kDecodeThreads, 0, stream>>>(static_cast<const __half*>(heads[l]), heights[l],
                widths[l], p->num_anchors, p->num_classes, p->strides[l], a[0], a[1], a[2], a[3], a[4], a[5], a[6],
                a[7], p->conf_thres, level_offset, num_positions, cand_keys, cand_boxes, cand_classes, counts);
        else
            ydn_decode_f32<<<grid, kDecodeThreads, 0, stream>>>(static_cast<const float*>(heads[l]), heights[l],
                widths[l], p->num_anchors, p->num_classes, p->strides[l], a[0], a[1], a[2], a[3], a[4], a[5], a[6],
                a[7], p->conf_thres, level_offset, num_positions, cand_keys, cand_boxes, cand_classes, counts);
        level_offset += n;
    }

    const int top_k_pow2 = nextPow2(top_k);
    const size_t sort_bytes = static_cast<size_t>(top_k_pow2) * sizeof(ydn_u64);
    const int use_global = sort_bytes > kMaxSharedSortBytes ? 1 : 0;
    ydn_select_sort<<<batch, YDN_SELECT_THREADS, use_global ? 0 : sort_bytes, stream>>>(cand_keys, counts,
        cand_boxes, cand_classes, num_positions, top_k, top_k_pow2, sort_buf, use_global, sorted_boxes,
        sorted_scores, sorted_classes, num_sorted);

    const int words = (top_k + 63) / 64;
    int device = 0;
    int sms = 1;
    cudaGetDevice(&device);
    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
    // Blocks loop over the tiles that exist on the device (known there only); 32 per SM fill any GPU.
    int mask_blocks = sms * 32;
    if (mask_blocks > words * words)
        mask_blocks = words * words;
    ydn_nms_mask<<<dim3(mask_blocks, batch), YDN_MASK_THREADS, 0, stream>>>(sorted_boxes, sorted_classes,
        num_sorted, top_k, words, p->iou_thres, p->class_agnostic, mask);

    ydn_nms_scan<<<batch, 32, static_cast<size_t>(words) * sizeof(ydn_u64), stream>>>(mask, num_sorted, top_k,
        words, sorted_boxes, sorted_scores, sorted_classes, p->max_det, out_num, out_boxes, out_scores,
        out_classes);
    return static_cast<int>(cudaGetLastError());
}
