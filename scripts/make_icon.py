"""Draws qgis_plugin/icon.png: three tilted image tiles (one with a cloud) fusing into one."""

from pathlib import Path

from PIL import Image, ImageDraw

S = 128
img = Image.new("RGBA", (S, S), (0, 0, 0, 0))
d = ImageDraw.Draw(img)
# Three input tiles, stacked and offset, the top one with a white cloud.
for i, colour in enumerate([(120, 144, 156), (96, 125, 139), (69, 90, 100)]):
    x, y = 6 + i * 10, 6 + i * 10
    d.rounded_rectangle([x, y, x + 62, y + 62], 8, fill=colour + (255,),
                        outline=(255, 255, 255, 255), width=3)
d.ellipse([34, 40, 56, 58], fill=(255, 255, 255, 235))
d.ellipse([46, 34, 70, 58], fill=(255, 255, 255, 235))
d.ellipse([60, 44, 78, 60], fill=(255, 255, 255, 235))
# The fused result: a clean tile with a road (orange) and buildings (blue).
x0, y0 = 58, 58
d.rounded_rectangle([x0, y0, x0 + 64, y0 + 64], 8, fill=(235, 235, 230, 255),
                    outline=(40, 40, 40, 255), width=3)
d.line([x0 + 6, y0 + 44, x0 + 58, y0 + 20], fill=(230, 85, 13, 255), width=7)
for bx, by in ((x0 + 10, y0 + 10), (x0 + 30, y0 + 46), (x0 + 44, y0 + 40)):
    d.rectangle([bx, by, bx + 12, by + 10], fill=(49, 100, 200, 255))
out = Path(__file__).resolve().parents[1] / "qgis_plugin" / "icon.png"
img.save(out)
print(out)
