#version 330
// One pass of a separable resampler: along `axis`, from the source's texel grid to this target's.
// The taps and weights of every output column (or row) are computed once on the host (Lanczos-3,
// or a single tap for nearest) and read from `weights`: no trigonometry per pixel, which is what
// makes the pass cheap on a software rasteriser.
// The first pass also blends the two newest generated frames (when the model is slower than the
// display), so the second pass reads a single texture.
uniform sampler2D frame_a;
uniform sampler2D frame_b;
uniform sampler2D weights;  // [length along the axis, 2] RGBA32F: (w0, w1, w2, first tap), (w3, w4, w5, -)
uniform float mix_b;        // weight of frame_b, 0..1
uniform int blend;          // 1: mix frame_a and frame_b; 0: read frame_a only
uniform ivec2 axis;         // (1, 0) horizontal, (0, 1) vertical
uniform int flip_y;         // 1: the source rows are top-down (uploaded from host memory)
uniform ivec2 origin;       // the viewport's corner: gl_FragCoord is in framebuffer pixels
out vec4 color;

vec3 fetch(ivec2 p) {
    ivec2 size = textureSize(frame_a, 0);
    p = clamp(p, ivec2(0), size - 1);
    if (flip_y == 1) p.y = size.y - 1 - p.y;
    vec3 a = texelFetch(frame_a, p, 0).rgb;
    if (blend == 0) return a;
    return mix(a, texelFetch(frame_b, p, 0).rgb, mix_b);
}

void main() {
    ivec2 here = ivec2(gl_FragCoord.xy) - origin;
    int along = axis.x == 1 ? here.x : here.y;
    vec4 w012 = texelFetch(weights, ivec2(along, 0), 0);
    vec4 w345 = texelFetch(weights, ivec2(along, 1), 0);
    ivec2 p = here * (ivec2(1) - axis) + axis * int(w012.w);  // first tap; the other axis is 1:1
    vec3 sum = w012.x * fetch(p) + w012.y * fetch(p + axis) + w012.z * fetch(p + 2 * axis)
             + w345.x * fetch(p + 3 * axis) + w345.y * fetch(p + 4 * axis) + w345.z * fetch(p + 5 * axis);
    color = vec4(clamp(sum, 0.0, 1.0), 1.0);
}
