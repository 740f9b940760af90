package imageproc

import (
	"bytes"
	"encoding/binary"
	"io"
)

// maxExifBytes bounds how much metadata is read to find the orientation tag.
const maxExifBytes = 1 << 20

// readOrientation returns the EXIF orientation (1..8) of a file, or 1 when it has none or it is
// malformed. It looks where Pillow's getexif() looks: the first APP1 "Exif" segment of a JPEG, the eXIf
// chunk of a PNG (before or after the image data: Pillow loads the picture to find it), the EXIF chunk
// of a WebP.
func readOrientation(ft format, r io.ReaderAt, size int64) int {
	var exif []byte
	switch ft {
	case formatJPEG:
		exif = jpegExif(r, size)
	case formatPNG:
		exif = chunkExif(r, size, 8, 4, binary.BigEndian, "eXIf", "IEND")
	case formatWebP:
		exif = chunkExif(r, size, 12, 0, binary.LittleEndian, "EXIF", "")
	}
	if exif == nil {
		return 1
	}
	exif = bytes.TrimPrefix(exif, []byte("Exif\x00\x00"))
	return tiffOrientation(bytes.NewReader(exif), int64(len(exif)))
}

func readAt(r io.ReaderAt, off int64, n int) []byte {
	if n < 0 || n > maxExifBytes || off < 0 {
		return nil
	}
	buf := make([]byte, n)
	if _, err := r.ReadAt(buf, off); err != nil {
		return nil
	}
	return buf
}

// jpegExif walks the JPEG markers up to the first scan.
func jpegExif(r io.ReaderAt, size int64) []byte {
	off := int64(2)
	for off+4 <= size {
		m := readAt(r, off, 2)
		if m == nil || m[0] != 0xff {
			return nil
		}
		marker := m[1]
		switch {
		case marker == 0xff: // fill byte
			off++
			continue
		case marker == 0x01 || (marker >= 0xd0 && marker <= 0xd7): // no payload
			off += 2
			continue
		case marker == 0xda || marker == 0xd9: // start of scan, end of image
			return nil
		}
		l := readAt(r, off+2, 2)
		if l == nil {
			return nil
		}
		n := int(binary.BigEndian.Uint16(l))
		if n < 2 {
			return nil
		}
		if marker == 0xe1 && n >= 8 {
			p := readAt(r, off+4, n-2)
			if bytes.HasPrefix(p, []byte("Exif\x00\x00")) {
				return p
			}
		}
		off += 2 + int64(n)
	}
	return nil
}

// chunkExif walks length-prefixed chunks (PNG: length, type, data, CRC; RIFF: type, length, data, pad)
// and returns the data of the chunk named want, stopping at the chunk named stop.
func chunkExif(r io.ReaderAt, size, off int64, crcLen int64, bo binary.ByteOrder, want, stop string) []byte {
	png := bo == binary.BigEndian
	for off+8 <= size {
		h := readAt(r, off, 8)
		if h == nil {
			return nil
		}
		var name string
		var n int64
		if png {
			n, name = int64(bo.Uint32(h[:4])), string(h[4:])
		} else {
			name, n = string(h[:4]), int64(bo.Uint32(h[4:]))
		}
		if name == want {
			return readAt(r, off+8, int(n))
		}
		if name == stop || n < 0 {
			return nil
		}
		next := off + 8 + n + crcLen
		if !png && n%2 == 1 {
			next++
		}
		if next <= off {
			return nil
		}
		off = next
	}
	return nil
}

// tiffOrientation reads tag 0x0112 from IFD0 of a TIFF structure.
func tiffOrientation(r io.ReaderAt, size int64) int {
	h := readAt(r, 0, 8)
	if h == nil {
		return 1
	}
	var bo binary.ByteOrder
	switch string(h[:2]) {
	case "II":
		bo = binary.LittleEndian
	case "MM":
		bo = binary.BigEndian
	default:
		return 1
	}
	if bo.Uint16(h[2:]) != 42 {
		return 1
	}
	ifd := int64(bo.Uint32(h[4:]))
	c := readAt(r, ifd, 2)
	if c == nil {
		return 1
	}
	count := int(bo.Uint16(c))
	if ifd+2+int64(count)*12 > size {
		return 1
	}
	entries := readAt(r, ifd+2, count*12)
	if entries == nil {
		return 1
	}
	for i := 0; i < count; i++ {
		e := entries[i*12 : i*12+12]
		if bo.Uint16(e) != 0x0112 {
			continue
		}
		var v int
		switch typ := bo.Uint16(e[2:]); typ {
		case 3: // SHORT
			v = int(bo.Uint16(e[8:]))
		case 4: // LONG
			v = int(bo.Uint32(e[8:]))
		default:
			return 1
		}
		if v < 1 || v > 8 {
			return 1
		}
		return v
	}
	return 1
}

// applyOrientation is PIL.ImageOps.exif_transpose's pixel move for orientations 2..8.
func applyOrientation(m *RGB, o int) *RGB {
	if o < 2 || o > 8 {
		return m
	}
	w, h := m.W, m.H
	ow, oh := w, h
	if o >= 5 { // the four that swap the axes
		ow, oh = h, w
	}
	out := NewRGB(ow, oh)
	for y := 0; y < oh; y++ {
		for x := 0; x < ow; x++ {
			var sx, sy int
			switch o {
			case 2: // FLIP_LEFT_RIGHT
				sx, sy = w-1-x, y
			case 3: // ROTATE_180
				sx, sy = w-1-x, h-1-y
			case 4: // FLIP_TOP_BOTTOM
				sx, sy = x, h-1-y
			case 5: // TRANSPOSE
				sx, sy = y, x
			case 6: // ROTATE_270 (90° clockwise)
				sx, sy = y, h-1-x
			case 7: // TRANSVERSE
				sx, sy = w-1-y, h-1-x
			case 8: // ROTATE_90 (90° counter-clockwise)
				sx, sy = w-1-y, x
			}
			copy(out.Pix[(y*ow+x)*3:(y*ow+x)*3+3], m.Pix[(sy*w+sx)*3:(sy*w+sx)*3+3])
		}
	}
	return out
}
