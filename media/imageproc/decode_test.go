package imageproc

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/image/bmp"
	"golang.org/x/image/tiff"
)

func encodePNG(t *testing.T, img image.Image) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func decodeBytes(t *testing.T, data []byte, opt DecodeOptions) *RGB {
	t.Helper()
	m, err := Decode(bytes.NewReader(data), int64(len(data)), opt)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestDecodeConvertsAsPillow checks each PNG colour type against what Pillow's open + convert("RGB")
// gives: alpha dropped without compositing, palette looked up, 16-bit samples by their high byte,
// 16-bit grey clipped at 255.
func TestDecodeConvertsAsPillow(t *testing.T) {
	gray := image.NewGray(image.Rect(0, 0, 2, 1))
	gray.Pix = []uint8{7, 250}

	gray16 := image.NewGray16(image.Rect(0, 0, 3, 1))
	for i, v := range []uint16{200, 255, 300} {
		gray16.SetGray16(i, 0, color.Gray16{Y: v})
	}

	nrgba := image.NewNRGBA(image.Rect(0, 0, 2, 1))
	nrgba.SetNRGBA(0, 0, color.NRGBA{10, 20, 30, 0}) // fully transparent: the colour survives
	nrgba.SetNRGBA(1, 0, color.NRGBA{40, 50, 60, 128})

	pal := image.NewPaletted(image.Rect(0, 0, 2, 1), color.Palette{color.NRGBA{1, 2, 3, 0}, color.RGBA{4, 5, 6, 255}})
	pal.Pix = []uint8{1, 0}

	nrgba64 := image.NewNRGBA64(image.Rect(0, 0, 1, 1))
	nrgba64.SetNRGBA64(0, 0, color.NRGBA64{0x12ff, 0x3400, 0xfe01, 0x8000})

	rgb48 := image.NewRGBA64(image.Rect(0, 0, 1, 1))
	rgb48.SetRGBA64(0, 0, color.RGBA64{0xabcd, 0x0102, 0xff00, 0xffff})

	for _, c := range []struct {
		name string
		img  image.Image
		want []uint8
	}{
		{"gray", gray, []uint8{7, 7, 7, 250, 250, 250}},
		{"gray16", gray16, []uint8{200, 200, 200, 255, 255, 255, 255, 255, 255}},
		{"rgba", nrgba, []uint8{10, 20, 30, 40, 50, 60}},
		{"palette+tRNS", pal, []uint8{4, 5, 6, 1, 2, 3}},
		{"rgba16", nrgba64, []uint8{0x12, 0x34, 0xfe}},
		{"rgb16", rgb48, []uint8{0xab, 0x01, 0xff}},
	} {
		got := decodeBytes(t, encodePNG(t, c.img), DecodeOptions{})
		if !bytes.Equal(got.Pix, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, got.Pix, c.want)
		}
	}
	// 16-bit grey with a transparent key (tRNS): Go widens it to 16-bit RGBA, Pillow still clips.
	keyed := withPNGChunk(encodePNG(t, gray16), "tRNS", []byte{0, 200})
	if got := decodeBytes(t, keyed, DecodeOptions{}); !bytes.Equal(got.Pix, []uint8{200, 200, 200, 255, 255, 255, 255, 255, 255}) {
		t.Errorf("gray16+tRNS: got %v", got.Pix)
	}
}

func TestPixelConversions(t *testing.T) {
	for _, c := range []struct{ c, m, y, k, r, g, b uint8 }{
		{0, 0, 0, 0, 255, 255, 255},
		{255, 0, 0, 0, 0, 255, 255},
		{128, 0, 0, 0, 127, 255, 255}, // MULDIV255(128, 255) = 128
		{0, 0, 0, 255, 0, 0, 0},
		{100, 50, 0, 100, 94, 125, 155}, // nk = 155: 155 - MULDIV255(100, 155) = 155 - 61, 155 - 30
	} {
		r, g, b := cmykToRGB(c.c, c.m, c.y, c.k)
		if r != c.r || g != c.g || b != c.b {
			t.Errorf("cmyk %v -> %d %d %d, want %d %d %d", c, r, g, b, c.r, c.g, c.b)
		}
	}
	var d [3]uint8
	unpremultiply(d[:], 100, 250, 0, 200) // 255*100/200 = 127 (truncated), 255*250/200 clips
	if d != [3]uint8{127, 255, 0} {
		t.Errorf("unpremultiply = %v", d)
	}
	unpremultiply(d[:], 9, 8, 7, 0) // alpha 0 passes the colour through
	if d != [3]uint8{9, 8, 7} {
		t.Errorf("unpremultiply alpha 0 = %v", d)
	}
}

func TestDecodeOtherFormats(t *testing.T) {
	src := image.NewNRGBA(image.Rect(0, 0, 3, 2))
	for i := range src.Pix {
		src.Pix[i] = uint8(i * 9)
	}
	for i := 3; i < len(src.Pix); i += 4 {
		src.Pix[i] = 255
	}
	want := toRGB(src).Pix
	var b bytes.Buffer
	if err := bmp.Encode(&b, src); err != nil {
		t.Fatal(err)
	}
	if got := decodeBytes(t, b.Bytes(), DecodeOptions{}); !bytes.Equal(got.Pix, want) {
		t.Errorf("bmp: got %v, want %v", got.Pix, want)
	}
	b.Reset()
	if err := tiff.Encode(&b, src, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := Decode(bytes.NewReader(b.Bytes()), int64(b.Len()), DecodeOptions{}); err == nil || !strings.Contains(err.Error(), "TIFF images are not supported") {
		t.Errorf("tiff: %v, want a refusal", err)
	}

	// A 1x1 lossless WebP.
	webp := []byte("RIFF\x1a\x00\x00\x00WEBPVP8L\x0d\x00\x00\x00\x2f\x00\x00\x00\x10\x07\x10\x11\x11\x88\x88\xfe\x07\x00")
	if got := decodeBytes(t, webp, DecodeOptions{}); got.W != 1 || got.H != 1 {
		t.Errorf("webp: %dx%d", got.W, got.H)
	}

	// JPEG is lossy and Go's decoder is not libjpeg: only the shape and rough colours are checked.
	big := image.NewRGBA(image.Rect(0, 0, 16, 8))
	for i := range big.Pix {
		big.Pix[i] = []uint8{200, 100, 50, 255}[i%4]
	}
	b.Reset()
	if err := jpeg.Encode(&b, big, &jpeg.Options{Quality: 100}); err != nil {
		t.Fatal(err)
	}
	got := decodeBytes(t, b.Bytes(), DecodeOptions{})
	if got.W != 16 || got.H != 8 {
		t.Fatalf("jpeg: %dx%d", got.W, got.H)
	}
	for i, v := range got.Pix {
		if d := int(v) - int([]uint8{200, 100, 50}[i%3]); d > 3 || d < -3 {
			t.Fatalf("jpeg: byte %d is %d", i, v)
		}
	}
}

// tiffWithOrientation is a minimal big-endian TIFF structure whose IFD0 holds only the orientation tag.
func tiffWithOrientation(o uint16) []byte {
	b := []byte("MM\x00\x2a\x00\x00\x00\x08\x00\x01")
	e := make([]byte, 12)
	binary.BigEndian.PutUint16(e, 0x0112)
	binary.BigEndian.PutUint16(e[2:], 3)
	binary.BigEndian.PutUint32(e[4:], 1)
	binary.BigEndian.PutUint16(e[8:], o)
	return append(append(b, e...), 0, 0, 0, 0)
}

// withPNGChunk inserts a chunk right after IHDR.
func withPNGChunk(pngData []byte, typ string, data []byte) []byte {
	const afterIHDR = 8 + 8 + 13 + 4
	chunk := binary.BigEndian.AppendUint32(nil, uint32(len(data)))
	chunk = append(chunk, typ...)
	chunk = append(chunk, data...)
	chunk = binary.BigEndian.AppendUint32(chunk, crc32.ChecksumIEEE(append([]byte(typ), data...)))
	out := append([]byte(nil), pngData[:afterIHDR]...)
	out = append(out, chunk...)
	return append(out, pngData[afterIHDR:]...)
}

func TestOrientation(t *testing.T) {
	// a b c
	// d e f
	src := image.NewNRGBA(image.Rect(0, 0, 3, 2))
	for i := 0; i < 6; i++ {
		src.SetNRGBA(i%3, i/3, color.NRGBA{uint8('a' + i), 0, 0, 255})
	}
	plain := encodePNG(t, src)
	for o, want := range map[uint16]string{
		1: "abc/def", 2: "cba/fed", 3: "fed/cba", 4: "def/abc",
		5: "ad/be/cf", 6: "da/eb/fc", 7: "fc/eb/da", 8: "cf/be/ad",
		9: "abc/def", // not an orientation: left alone
	} {
		for _, prefix := range []string{"", "Exif\x00\x00"} {
			data := withPNGChunk(plain, "eXIf", append([]byte(prefix), tiffWithOrientation(o)...))
			got := decodeBytes(t, data, DecodeOptions{})
			var s strings.Builder
			for y := 0; y < got.H; y++ {
				if y > 0 {
					s.WriteByte('/')
				}
				for x := 0; x < got.W; x++ {
					s.WriteByte(got.Pix[(y*got.W+x)*3])
				}
			}
			if s.String() != want {
				t.Errorf("orientation %d (prefix %q): %s, want %s", o, prefix, s.String(), want)
			}
			if o == 6 {
				if kept := decodeBytes(t, data, DecodeOptions{IgnoreOrientation: true}); kept.W != 3 {
					t.Errorf("IgnoreOrientation: %dx%d, want the stored 3x2", kept.W, kept.H)
				}
			}
		}
	}

	// JPEG: the first APP1 Exif segment.
	var b bytes.Buffer
	if err := jpeg.Encode(&b, image.NewGray(image.Rect(0, 0, 16, 8)), nil); err != nil {
		t.Fatal(err)
	}
	payload := append([]byte("Exif\x00\x00"), tiffWithOrientation(8)...)
	app1 := append([]byte{0xff, 0xe1}, binary.BigEndian.AppendUint16(nil, uint16(len(payload)+2))...)
	jpg := append(append(append([]byte(nil), b.Bytes()[:2]...), append(app1, payload...)...), b.Bytes()[2:]...)
	if got := decodeBytes(t, jpg, DecodeOptions{}); got.W != 8 || got.H != 16 {
		t.Errorf("jpeg orientation 8: %dx%d, want 8x16", got.W, got.H)
	}
	// eXIf after the image data counts too (Pillow finds it when getexif() loads the picture).
	chunk := withPNGChunk(plain, "eXIf", tiffWithOrientation(3))[33 : 33+12+26]
	late := append(append(append([]byte(nil), plain[:len(plain)-12]...), chunk...), plain[len(plain)-12:]...)
	if got := decodeBytes(t, late, DecodeOptions{}); got.Pix[0] != 'f' {
		t.Errorf("eXIf after IDAT: first pixel %c, want f (rotated 180)", got.Pix[0])
	}
	// A malformed EXIF block is ignored, as a missing one.
	if got := decodeBytes(t, withPNGChunk(plain, "eXIf", []byte("MM\x00\x2a\xff\xff\xff\xff")), DecodeOptions{}); got.W != 3 {
		t.Errorf("malformed exif: %dx%d", got.W, got.H)
	}
}

func TestDecodeRefuses(t *testing.T) {
	good, err := os.ReadFile("testdata/img.png")
	if err != nil {
		t.Fatal(err)
	}
	// A header claiming 20000x20000 (400M pixels): refused from the header alone.
	huge := append([]byte(nil), good...)
	binary.BigEndian.PutUint32(huge[16:], 20000)
	binary.BigEndian.PutUint32(huge[20:], 20000)
	binary.BigEndian.PutUint32(huge[29:], crc32.ChecksumIEEE(huge[12:29]))
	_, err = Decode(bytes.NewReader(huge), int64(len(huge)), DecodeOptions{})
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "20000x20000") {
		t.Errorf("huge header: %v", err)
	}
	// The limit is the caller's: img.png is 5917 pixels.
	if _, err := Decode(bytes.NewReader(good), int64(len(good)), DecodeOptions{MaxPixels: 5916}); !errors.Is(err, ErrTooLarge) {
		t.Errorf("MaxPixels 5916: %v", err)
	}
	if _, err := Decode(bytes.NewReader(good), int64(len(good)), DecodeOptions{MaxPixels: 5917}); err != nil {
		t.Errorf("MaxPixels 5917: %v", err)
	}
	for name, data := range map[string][]byte{
		"truncated PNG":           good[:len(good)/2],
		"text":                    []byte("hello, world"),
		"empty":                   nil,
		"GIF":                     []byte("GIF89a\x01\x00\x01\x00"),
		"JPEG SOI only":           {0xff, 0xd8, 0xff},
		"RIFF not WebP":           []byte("RIFF\x04\x00\x00\x00WAVE"),
		"WebP no chunks":          []byte("RIFF\x04\x00\x00\x00WEBP"),
		"WebP chunk past the end": []byte("RIFF\x1a\x00\x00\x00WEBPVP8 \xff\xff\xff\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"),
		"WebP RIFF past the end":  []byte("RIFF\xff\xff\x00\x00WEBPVP8L\x04\x00\x00\x00\x2f\x00\x00\x00"),
	} {
		if _, err := Decode(bytes.NewReader(data), int64(len(data)), DecodeOptions{}); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}

	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.png")
	if err := os.WriteFile(bad, good[:100], 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{bad, filepath.Join(dir, "missing.png"), dir} {
		if _, err := DecodeFile(p, DecodeOptions{}); err == nil || !strings.Contains(err.Error(), p) {
			t.Errorf("DecodeFile(%s) = %v, want an error naming the file", p, err)
		}
	}
}
