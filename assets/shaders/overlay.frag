#version 330
// Text and other overlays drawn over the window (not part of the frame that files record).
uniform sampler2D overlay;
in vec2 uv;
out vec4 color;
void main() {
    color = texture(overlay, vec2(uv.x, 1.0 - uv.y));
}
