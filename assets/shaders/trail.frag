#version 330
// Video feedback (the VJ trail): this frame, mixed with the previous presented frame, which is zoomed
// and rotated about the centre of the output and faded first:
//     shown = mix(fresh, fade * past(R(-angle) (p - centre) / zoom + centre), amount)
// Where the transformed lookup falls outside the previous frame (zooming out), it reads the background.
// Two outputs: `shown` (8-bit, what the window and files get) and `kept` (half float, next frame's
// `past`), so faint trails keep fading instead of sticking at an 8-bit level.
uniform sampler2D fresh;  // this frame, upscaled, output size (RGBA8)
uniform sampler2D past;   // the previous presented frame, output size (RGBA16F, bilinear)
uniform float amount;     // weight of the past, 0..1 (0: the fresh frame only)
uniform float zoom;       // > 1: the past grows outward from the centre each frame
uniform float angle;      // radians a frame, counter-clockwise on screen
uniform float fade;       // brightness multiplier of the past each frame
uniform vec3 background;
layout(location = 0) out vec4 shown;
layout(location = 1) out vec4 kept;

void main() {
    vec2 size = vec2(textureSize(fresh, 0));
    vec3 now = texelFetch(fresh, ivec2(gl_FragCoord.xy), 0).rgb;
    float c = cos(angle), s = sin(angle);
    vec2 q = mat2(c, -s, s, c) * (gl_FragCoord.xy - 0.5 * size) / zoom + 0.5 * size;  // R(-angle) d / zoom
    bool inside = all(greaterThanEqual(q, vec2(0.0))) && all(lessThanEqual(q, size));
    vec3 before = inside ? texture(past, q / size).rgb : background;
    vec3 rgb = clamp(mix(now, fade * before, amount), 0.0, 1.0);
    shown = vec4(rgb, 1.0);
    kept = vec4(rgb, 1.0);
}
