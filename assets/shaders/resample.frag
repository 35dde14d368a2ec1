#version 330
// One pass of a separable resampler: along `axis`, from the source's texel grid to this target's.
// Lanczos (a = 3) keeps edges crisp when a 64 px GAN frame fills a projector; radius 0 is nearest.
// The first pass also blends the two newest generated frames (when the model is slower than the
// display), so the second pass reads a single texture.
uniform sampler2D frame_a;
uniform sampler2D frame_b;
uniform float mix_b;      // weight of frame_b, 0..1
uniform int blend;        // 1: mix frame_a and frame_b; 0: read frame_a only
uniform ivec2 axis;       // (1, 0) horizontal, (0, 1) vertical
uniform int radius;       // 3: Lanczos-3; 0: nearest
uniform float dst_size;   // target length along the axis, in pixels
uniform int flip_y;       // 1: the source rows are top-down (uploaded from host memory)
uniform ivec2 origin;     // the viewport's corner: gl_FragCoord is in framebuffer pixels
out vec4 color;

const float PI = 3.14159265358979;

float lanczos(float x, float a) {
    if (abs(x) < 1e-5) return 1.0;
    if (abs(x) >= a) return 0.0;
    float px = PI * x;
    return a * sin(px) * sin(px / a) / (px * px);
}

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
    float src_size = float(axis.x == 1 ? textureSize(frame_a, 0).x : textureSize(frame_a, 0).y);
    float x = (float(along) + 0.5) * src_size / dst_size - 0.5;  // source coordinate, texel centres
    ivec2 base = here * (ivec2(1) - axis);  // the other axis: 1:1 with the source
    if (radius == 0) {
        color = vec4(fetch(base + axis * int(floor(x + 0.5))), 1.0);
        return;
    }
    int i0 = int(floor(x));
    vec3 sum = vec3(0.0);
    float wsum = 0.0;
    for (int i = i0 - radius + 1; i <= i0 + radius; i++) {
        float w = lanczos(x - float(i), float(radius));
        sum += w * fetch(base + axis * i);
        wsum += w;
    }
    color = vec4(clamp(sum / wsum, 0.0, 1.0), 1.0);
}
