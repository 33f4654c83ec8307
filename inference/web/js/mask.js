// The inpainting mask editor: the source image on one canvas, the mask painted on a
// second canvas stacked over it at the image's own resolution. Painted pixels are opaque
// white, the rest transparent; the mask sent is white (repaint) on black (keep), as A1111 reads it.

export class MaskEditor {
  constructor({ imageCanvas, maskCanvas, brushSize }) {
    this.imageCanvas = imageCanvas;
    this.maskCanvas = maskCanvas;
    this.brushSize = brushSize; // <input type=range>: diameter in screen pixels
    this.erasing = false;
    this.drawing = false;
    this.last = null;
    this.painted = false;
    maskCanvas.addEventListener("pointerdown", (event) => this.start(event));
    maskCanvas.addEventListener("pointermove", (event) => this.move(event));
    for (const type of ["pointerup", "pointercancel", "pointerleave"]) {
      maskCanvas.addEventListener(type, () => this.stop());
    }
  }

  /** Shows `dataUrl` and starts an empty mask of the same size. */
  async setImage(dataUrl) {
    const image = new Image();
    image.src = dataUrl;
    await image.decode();
    for (const canvas of [this.imageCanvas, this.maskCanvas]) {
      canvas.width = image.naturalWidth;
      canvas.height = image.naturalHeight;
    }
    this.imageCanvas.getContext("2d").drawImage(image, 0, 0);
    this.clear();
  }

  setErasing(erasing) {
    this.erasing = erasing;
  }

  clear() {
    this.maskCanvas.getContext("2d").clearRect(0, 0, this.maskCanvas.width, this.maskCanvas.height);
    this.painted = false;
  }

  /** Painted becomes unpainted and the other way round. */
  invert() {
    const context = this.maskCanvas.getContext("2d");
    const pixels = context.getImageData(0, 0, this.maskCanvas.width, this.maskCanvas.height);
    const data = pixels.data;
    for (let i = 0; i < data.length; i += 4) {
      data[i] = data[i + 1] = data[i + 2] = 255;
      data[i + 3] = 255 - data[i + 3];
    }
    context.putImageData(pixels, 0, 0);
    this.painted = true;
  }

  hasMask() {
    if (!this.painted || !this.maskCanvas.width) return false;
    const data = this.maskCanvas.getContext("2d").getImageData(0, 0, this.maskCanvas.width, this.maskCanvas.height).data;
    for (let i = 3; i < data.length; i += 4) if (data[i] > 0) return true;
    return false;
  }

  /** The mask as a PNG data URL: white where painted, black elsewhere. */
  maskDataUrl() {
    const out = document.createElement("canvas");
    out.width = this.maskCanvas.width;
    out.height = this.maskCanvas.height;
    const context = out.getContext("2d");
    context.fillStyle = "#000";
    context.fillRect(0, 0, out.width, out.height);
    context.drawImage(this.maskCanvas, 0, 0);
    return out.toDataURL("image/png");
  }

  point(event) {
    const rect = this.maskCanvas.getBoundingClientRect();
    const scale = this.maskCanvas.width / rect.width;
    return { x: (event.clientX - rect.left) * scale, y: (event.clientY - rect.top) * scale, scale };
  }

  start(event) {
    if (!this.maskCanvas.width) return;
    event.preventDefault();
    this.maskCanvas.setPointerCapture?.(event.pointerId);
    this.drawing = true;
    this.last = null;
    this.move(event);
  }

  move(event) {
    if (!this.drawing) return;
    const { x, y, scale } = this.point(event);
    const context = this.maskCanvas.getContext("2d");
    context.globalCompositeOperation = this.erasing ? "destination-out" : "source-over";
    context.strokeStyle = context.fillStyle = "#fff";
    context.lineCap = context.lineJoin = "round";
    const width = Number(this.brushSize.value) * scale;
    context.lineWidth = width;
    context.beginPath();
    if (this.last) {
      context.moveTo(this.last.x, this.last.y);
      context.lineTo(x, y);
      context.stroke();
    } else {
      context.arc(x, y, width / 2, 0, Math.PI * 2);
      context.fill();
    }
    context.globalCompositeOperation = "source-over";
    this.last = { x, y };
    this.painted = true;
  }

  stop() {
    this.drawing = false;
    this.last = null;
  }
}
