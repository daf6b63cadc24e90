// GPU pre-processing for one BGR uint8 frame: letterbox (bilinear resize + grey padding), BGR->RGB, /255,
// HWC->CHW, written as float32 planes ready for the network. Device code only (compiled by NVRTC or nvcc);
// the host computes the geometry with jetson_detect.math.letterbox.letterbox_geometry and launches a 2-D grid
// covering size x size output pixels, one thread per pixel.
//
// The resize follows OpenCV's INTER_LINEAR convention (half-pixel centres, edge clamping) in float, so the
// result equals the CPU letterbox (cv2.resize, 11-bit fixed point, rounded to uint8) within 1/255.

extern "C" __global__ void letterbox_preprocess(const unsigned char* __restrict__ src, int src_h, int src_w,
                                                int src_row_bytes, float* __restrict__ dst, int size, int new_w,
                                                int new_h, int left, int top, float pad_value)
{
    const int x = blockIdx.x * blockDim.x + threadIdx.x;
    const int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= size || y >= size) {
        return;
    }
    const int plane = size * size;
    const int out = y * size + x;
    const int rx = x - left;
    const int ry = y - top;
    const float inv255 = 1.0f / 255.0f;

    if (rx < 0 || ry < 0 || rx >= new_w || ry >= new_h) {
        const float pad = pad_value * inv255;
        dst[out] = pad;
        dst[plane + out] = pad;
        dst[2 * plane + out] = pad;
        return;
    }

    // Per-axis source step, as cv2.resize computes it (source size / destination size).
    const float scale_x = (float)src_w / (float)new_w;
    const float scale_y = (float)src_h / (float)new_h;
    float sx = ((float)rx + 0.5f) * scale_x - 0.5f;
    float sy = ((float)ry + 0.5f) * scale_y - 0.5f;
    sx = fminf(fmaxf(sx, 0.0f), (float)(src_w - 1));
    sy = fminf(fmaxf(sy, 0.0f), (float)(src_h - 1));
    const int x0 = (int)floorf(sx);
    const int y0 = (int)floorf(sy);
    const int x1 = min(x0 + 1, src_w - 1);
    const int y1 = min(y0 + 1, src_h - 1);
    const float fx = sx - (float)x0;
    const float fy = sy - (float)y0;

    const unsigned char* row0 = src + (long long)y0 * src_row_bytes;
    const unsigned char* row1 = src + (long long)y1 * src_row_bytes;
    float bgr[3];
    for (int c = 0; c < 3; ++c) {
        const float top_value = (1.0f - fx) * (float)row0[x0 * 3 + c] + fx * (float)row0[x1 * 3 + c];
        const float bottom_value = (1.0f - fx) * (float)row1[x0 * 3 + c] + fx * (float)row1[x1 * 3 + c];
        bgr[c] = (1.0f - fy) * top_value + fy * bottom_value;
    }
    dst[out] = bgr[2] * inv255;
    dst[plane + out] = bgr[1] * inv255;
    dst[2 * plane + out] = bgr[0] * inv255;
}
