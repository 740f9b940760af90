package imageproc

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"io"

	"github.com/neurosurg/neurosurg/formats/regfile"
	"golang.org/x/image/bmp"
	"golang.org/x/image/webp"
)

// RGB is an 8-bit RGB picture, rows top to bottom, pixels interleaved: Pix[(y*W+x)*3+c] (HWC, the layout
// of numpy.array(pil_image)).
type RGB struct {
	W, H int
	Pix  []uint8
}

// NewRGB returns a black w×h picture.
func NewRGB(w, h int) *RGB {
	return &RGB{W: w, H: h, Pix: make([]uint8, w*h*3)}
}

// Clone returns a deep copy.
func (m *RGB) Clone() *RGB {
	return &RGB{W: m.W, H: m.H, Pix: append([]uint8(nil), m.Pix...)}
}

// DefaultMaxPixels is Pillow's Image.MAX_IMAGE_PIXELS (int(1024 * 1024 * 1024 // 4 // 3)). Pillow only
// warns between this and twice it; we refuse at it, before decoding anything.
const DefaultMaxPixels = 89478485

// maxWorkPixels bounds every picture this package builds (a resize target, a padded canvas), whatever a
// config asks for.
const maxWorkPixels = DefaultMaxPixels

// DecodeOptions tunes Decode. The zero value is the Hugging Face behaviour under Pillow's size limit.
type DecodeOptions struct {
	// MaxPixels refuses pictures with more pixels than this (0 means DefaultMaxPixels). The header is read
	// first, so a refused picture costs no pixel memory.
	MaxPixels int
	// IgnoreOrientation keeps the stored pixel order. By default the EXIF orientation is applied, as
	// transformers' load_image does (PIL.ImageOps.exif_transpose) when it is handed a path or URL.
	IgnoreOrientation bool
}

// ErrTooLarge is wrapped by Decode when a picture is over the pixel limit.
var ErrTooLarge = errors.New("image is over the pixel limit")

type format int

const (
	formatUnknown format = iota
	formatPNG
	formatJPEG
	formatWebP
	formatBMP
	formatTIFF
	formatGIF
)

func (f format) String() string {
	return [...]string{"unknown", "PNG", "JPEG", "WebP", "BMP", "TIFF", "GIF"}[f]
}

func sniff(head []byte) format {
	switch {
	case bytes.HasPrefix(head, []byte("\x89PNG\r\n\x1a\n")):
		return formatPNG
	case bytes.HasPrefix(head, []byte{0xff, 0xd8, 0xff}):
		return formatJPEG
	case len(head) >= 12 && string(head[:4]) == "RIFF" && string(head[8:12]) == "WEBP":
		return formatWebP
	case bytes.HasPrefix(head, []byte("BM")):
		return formatBMP
	case bytes.HasPrefix(head, []byte("II*\x00")), bytes.HasPrefix(head, []byte("MM\x00*")):
		return formatTIFF
	case bytes.HasPrefix(head, []byte("GIF8")):
		return formatGIF
	}
	return formatUnknown
}

// DecodeFile reads a PNG, JPEG, WebP or BMP file into RGB, as transformers' load_image does:
// Image.open, exif_transpose, convert("RGB"). Errors name the file.
func DecodeFile(path string, opt DecodeOptions) (*RGB, error) {
	// regfile refuses a directory, FIFO or device before reading (a FIFO would block os.Open).
	f, err := regfile.Open(path)
	if err != nil {
		return nil, err // names the file
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	img, err := Decode(f, st.Size(), opt)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return img, nil
}

// Decode reads a picture of size bytes from r. See DecodeFile.
func Decode(r io.ReaderAt, size int64, opt DecodeOptions) (*RGB, error) {
	maxPixels := opt.MaxPixels
	if maxPixels <= 0 {
		maxPixels = DefaultMaxPixels
	}
	var head [32]byte
	n, _ := r.ReadAt(head[:], 0)
	ft := sniff(head[:n])
	switch ft {
	case formatUnknown:
		return nil, errors.New("not a PNG, JPEG, WebP or BMP image")
	case formatGIF:
		return nil, errors.New("GIF images are not supported (convert the frame to PNG)")
	case formatTIFF:
		// x/image/tiff bounds a strip's decompressed size only by the strip's declared dimensions, so a
		// small hostile file can ask for gigabytes; TIFF is rare as model input, so it is refused.
		return nil, errors.New("TIFF images are not supported (convert to PNG)")
	}

	if ft == formatWebP {
		if err := checkRIFF(r, size); err != nil {
			return nil, fmt.Errorf("WebP: %w", err)
		}
	}
	cfg, err := decodeConfig(ft, io.NewSectionReader(r, 0, size))
	if err != nil {
		return nil, fmt.Errorf("%s header: %w", ft, err)
	}
	if cfg.Width <= 0 || cfg.Height <= 0 {
		return nil, fmt.Errorf("%s header: empty image (%dx%d)", ft, cfg.Width, cfg.Height)
	}
	if int64(cfg.Width)*int64(cfg.Height) > int64(maxPixels) {
		return nil, fmt.Errorf("%dx%d = %d pixels: %w of %d", cfg.Width, cfg.Height,
			int64(cfg.Width)*int64(cfg.Height), ErrTooLarge, maxPixels)
	}

	img, err := decodeImage(ft, io.NewSectionReader(r, 0, size))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ft, err)
	}
	b := img.Bounds()
	if b.Dx() != cfg.Width || b.Dy() != cfg.Height {
		return nil, fmt.Errorf("%s: decoded %dx%d, header says %dx%d", ft, b.Dx(), b.Dy(), cfg.Width, cfg.Height)
	}
	if g, ok := img.(*image.NRGBA64); ok && ft == formatPNG && n >= 26 && head[24] == 16 && head[25] == 0 {
		// 16-bit grey with a tRNS key: Go widens it to NRGBA64, Pillow keeps it as I;16 and clips.
		img = grayOfNRGBA64(g)
	}
	out := toRGB(img)
	if !opt.IgnoreOrientation {
		out = applyOrientation(out, readOrientation(ft, r, size))
	}
	return out, nil
}

// checkRIFF refuses a RIFF file whose chunk sizes run past its end. x/image's VP8 decoder allocates a
// chunk's declared size (up to 128 MiB) before reading it, so a 100-byte file could claim that much.
func checkRIFF(r io.ReaderAt, size int64) error {
	var h [8]byte
	if _, err := r.ReadAt(h[:], 0); err != nil {
		return errors.New("truncated RIFF header")
	}
	end := 8 + int64(binary.LittleEndian.Uint32(h[4:]))
	if end > size {
		return fmt.Errorf("RIFF size %d runs past the end of the %d-byte file", end, size)
	}
	for off := int64(12); off+8 <= end; {
		if _, err := r.ReadAt(h[:], off); err != nil {
			return errors.New("truncated RIFF chunk header")
		}
		n := int64(binary.LittleEndian.Uint32(h[4:]))
		if off+8+n > end {
			return fmt.Errorf("chunk %q of %d bytes at %d runs past the end of the file", h[:4], n, off)
		}
		off += 8 + n + n%2
	}
	return nil
}

// decodeConfig and decodeImage turn a decoder panic into an error: the x/image decoders have had crashers
// on hostile input, and a bad file must never take the process down.
func decodeConfig(ft format, r io.Reader) (cfg image.Config, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("malformed (decoder panicked: %v)", p)
		}
	}()
	switch ft {
	case formatPNG:
		return png.DecodeConfig(r)
	case formatJPEG:
		return jpeg.DecodeConfig(r)
	case formatWebP:
		return webp.DecodeConfig(r)
	case formatBMP:
		return bmp.DecodeConfig(r)
	}
	return cfg, fmt.Errorf("no decoder for %s", ft)
}

func decodeImage(ft format, r io.Reader) (img image.Image, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("malformed (decoder panicked: %v)", p)
		}
	}()
	switch ft {
	case formatPNG:
		return png.Decode(r)
	case formatJPEG:
		return jpeg.Decode(r)
	case formatWebP:
		return webp.Decode(r)
	case formatBMP:
		return bmp.Decode(r)
	}
	return nil, fmt.Errorf("no decoder for %s", ft)
}

// toRGB is Pillow's convert("RGB") on what Pillow would have opened: alpha is dropped (rgba2rgb), not
// composited; palettes are looked up; 16-bit samples keep their high byte (Pillow unpacks RGB;16B that
// way), except 16-bit grey, which Pillow clips to 255 (I;16 -> RGB); premultiplied RGBa is
// un-premultiplied first (rgba2rgb_); CMYK goes through cmyk2rgb.
func toRGB(img image.Image) *RGB {
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	out := NewRGB(w, h)
	px := out.Pix
	switch m := img.(type) {
	case *image.RGBA:
		for y := 0; y < h; y++ {
			row := m.Pix[(y)*m.Stride : y*m.Stride+w*4]
			for x := 0; x < w; x++ {
				unpremultiply(px[(y*w+x)*3:], row[x*4], row[x*4+1], row[x*4+2], row[x*4+3])
			}
		}
	case *image.NRGBA:
		for y := 0; y < h; y++ {
			row := m.Pix[y*m.Stride : y*m.Stride+w*4]
			for x := 0; x < w; x++ {
				copy(px[(y*w+x)*3:(y*w+x)*3+3], row[x*4:x*4+3])
			}
		}
	case *image.RGBA64:
		for y := 0; y < h; y++ {
			row := m.Pix[y*m.Stride : y*m.Stride+w*8]
			for x := 0; x < w; x++ {
				unpremultiply(px[(y*w+x)*3:], row[x*8], row[x*8+2], row[x*8+4], row[x*8+6])
			}
		}
	case *image.NRGBA64:
		for y := 0; y < h; y++ {
			row := m.Pix[y*m.Stride : y*m.Stride+w*8]
			for x := 0; x < w; x++ {
				o := (y*w + x) * 3
				px[o], px[o+1], px[o+2] = row[x*8], row[x*8+2], row[x*8+4]
			}
		}
	case *image.Gray:
		for y := 0; y < h; y++ {
			row := m.Pix[y*m.Stride : y*m.Stride+w]
			for x, v := range row {
				o := (y*w + x) * 3
				px[o], px[o+1], px[o+2] = v, v, v
			}
		}
	case *image.Gray16:
		for y := 0; y < h; y++ {
			row := m.Pix[y*m.Stride : y*m.Stride+w*2]
			for x := 0; x < w; x++ {
				v := row[x*2+1]
				if row[x*2] != 0 { // big-endian: a high byte means the value is over 255
					v = 255
				}
				o := (y*w + x) * 3
				px[o], px[o+1], px[o+2] = v, v, v
			}
		}
	case *image.Paletted:
		pal := make([][3]uint8, 256)
		for i, c := range m.Palette {
			if i < 256 {
				pal[i] = colorRGB(c)
			}
		}
		for y := 0; y < h; y++ {
			row := m.Pix[y*m.Stride : y*m.Stride+w]
			for x, idx := range row {
				copy(px[(y*w+x)*3:(y*w+x)*3+3], pal[idx][:])
			}
		}
	case *image.YCbCr:
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				yi, ci := m.YOffset(b.Min.X+x, b.Min.Y+y), m.COffset(b.Min.X+x, b.Min.Y+y)
				o := (y*w + x) * 3
				px[o], px[o+1], px[o+2] = color.YCbCrToRGB(m.Y[yi], m.Cb[ci], m.Cr[ci])
			}
		}
	case *image.NYCbCrA:
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				yi, ci := m.YOffset(b.Min.X+x, b.Min.Y+y), m.COffset(b.Min.X+x, b.Min.Y+y)
				o := (y*w + x) * 3
				px[o], px[o+1], px[o+2] = color.YCbCrToRGB(m.Y[yi], m.Cb[ci], m.Cr[ci])
			}
		}
	case *image.CMYK:
		for y := 0; y < h; y++ {
			row := m.Pix[y*m.Stride : y*m.Stride+w*4]
			for x := 0; x < w; x++ {
				o := (y*w + x) * 3
				px[o], px[o+1], px[o+2] = cmykToRGB(row[x*4], row[x*4+1], row[x*4+2], row[x*4+3])
			}
		}
	default:
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				c := colorRGB(img.At(b.Min.X+x, b.Min.Y+y))
				copy(px[(y*w+x)*3:(y*w+x)*3+3], c[:])
			}
		}
	}
	return out
}

// grayOfNRGBA64 takes the grey channel back out of a widened 16-bit grey picture.
func grayOfNRGBA64(m *image.NRGBA64) *image.Gray16 {
	b := m.Bounds()
	g := image.NewGray16(image.Rect(0, 0, b.Dx(), b.Dy()))
	for y := 0; y < b.Dy(); y++ {
		for x := 0; x < b.Dx(); x++ {
			i := m.PixOffset(b.Min.X+x, b.Min.Y+y)
			copy(g.Pix[y*g.Stride+x*2:], m.Pix[i:i+2])
		}
	}
	return g
}

// unpremultiply is Pillow's rgba2rgb_ (RGBa -> RGB): colour × 255 / alpha, integer division, clipped;
// alpha 0 and 255 pass the colour through.
func unpremultiply(dst []uint8, r, g, b, a uint8) {
	if a == 255 || a == 0 {
		dst[0], dst[1], dst[2] = r, g, b
		return
	}
	f := func(c uint8) uint8 {
		v := 255 * int(c) / int(a)
		if v > 255 {
			v = 255
		}
		return uint8(v)
	}
	dst[0], dst[1], dst[2] = f(r), f(g), f(b)
}

// cmykToRGB is Pillow's cmyk2rgb.
func cmykToRGB(c, m, y, k uint8) (uint8, uint8, uint8) {
	nk := 255 - int(k)
	f := func(v uint8) uint8 {
		t := int(v)*nk + 128
		r := nk - (((t >> 8) + t) >> 8)
		if r < 0 {
			r = 0
		}
		return uint8(r)
	}
	return f(c), f(m), f(y)
}

// colorRGB drops alpha from any colour without premultiplying it.
func colorRGB(c color.Color) [3]uint8 {
	switch v := c.(type) {
	case color.NRGBA:
		return [3]uint8{v.R, v.G, v.B}
	case color.RGBA:
		var d [3]uint8
		unpremultiply(d[:], v.R, v.G, v.B, v.A)
		return d
	case color.Gray:
		return [3]uint8{v.Y, v.Y, v.Y}
	case nil:
		return [3]uint8{}
	}
	n := color.NRGBAModel.Convert(c).(color.NRGBA)
	return [3]uint8{n.R, n.G, n.B}
}
